"""The webhook against a real git repository served over file://: Bitbucket pushes
(which list no files) are filtered by git in the worker, and a push sent by
`ct-service send-sample` to `ct-service serve` is trained by a worker process at
exactly the pushed commit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from conftest import LENET, ROOT, WorkerProcess, ct_env, free_port, git, init_repository
from helpers import created, wait_finished, wait_for

from ct_service.orchestration import pipeline
from ct_service.orchestration.pipeline import Task
from ct_service.settings import Settings
from ct_service.tracking import PipelineStatus, Tracker
from ct_service.webhook.app import create_app
from ct_service.webhook.push import Provider, sign


@pytest.fixture
def repo(tmp_path: Path, mnist_dir: Path) -> tuple[Path, list[str]]:
    """models/lenet with quick defaults; commit 2 touches only the README, commit 3
    changes the model (dense_units 84 -> 32)."""
    repo = tmp_path / "repo"
    project = repo / "models" / "lenet"
    shutil.copytree(LENET, project, ignore=shutil.ignore_patterns("__pycache__"))
    mlproject = project / "MLproject"
    text = mlproject.read_text()
    for old, new in {
        "max_train_samples: {type: float, default: 0}": "max_train_samples: {type: float, default: 1000}",
        "epochs: {type: float, default: 3}": "epochs: {type: float, default: 1}",
        "data: {type: string, default: keras}": f"data: {{type: string, default: '{mnist_dir}'}}",
    }.items():
        assert old in text
        text = text.replace(old, new)
    mlproject.write_text(text)
    (repo / "README.md").write_text("models\n")
    init_repository(repo)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "LeNet")
    commits = [git(repo, "rev-parse", "HEAD")]
    (repo / "README.md").write_text("models, documented\n")
    git(repo, "commit", "-q", "-am", "Docs")
    commits.append(git(repo, "rev-parse", "HEAD"))
    mlproject.write_text(
        text.replace(
            "dense_units: {type: float, default: 84}", "dense_units: {type: float, default: 32}"
        )
    )
    git(repo, "commit", "-q", "-am", "Smaller dense layer")
    commits.append(git(repo, "rev-parse", "HEAD"))
    return repo, commits


@pytest.fixture
def allow_list(tmp_path: Path, repo, monkeypatch) -> Path:
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    path = tmp_path / "repositories.yaml"
    path.write_text(
        "repositories:\n"
        + "".join(
            f"  - {{name: acme/models, provider: {p}, url: '{repo[0].as_uri()}', secret_env: HOOK_SECRET,"
            " project: models/lenet, target: {threshold: 0.0}}\n"
            for p in ("github", "bitbucket")
        )
    )
    return path


def bitbucket_push(client, settings: Settings, before: str, after: str) -> str:
    """The run id of the pipeline a Bitbucket push of `after` records."""
    change = {
        "new": {"type": "branch", "name": "main", "target": {"hash": after}},
        "old": {"type": "branch", "name": "main", "target": {"hash": before}},
    }
    body = json.dumps(
        {"push": {"changes": [change]}, "repository": {"full_name": "acme/models"}}
    ).encode()
    headers = {
        "X-Event-Key": "repo:push",
        "X-Request-UUID": f"{before}{after}",
        **sign(Provider.BITBUCKET, body, "s3cret"),
    }
    answer = client.post("/hooks", data=body, headers=headers, content_type="application/json")
    assert answer.status_code == 202, answer.json
    return created(settings, answer.json["pipeline_id"])


@pytest.mark.integration
def test_bitbucket_pushes_are_filtered_by_git_in_the_worker(
    tmp_path: Path, repo, allow_list, redis_url
):
    settings = Settings(
        home=tmp_path / "ct",
        broker_url=redis_url,
        repositories_file=str(allow_list),
        git_allow_file=True,  # the repository is served over file://
        trust_pushed_code=True,  # its pushes train on this machine, not in a container
    )
    client = create_app(settings).test_client()
    _, (first, docs, model) = repo
    tracker = Tracker(settings)

    docs_only = bitbucket_push(client, settings, first, docs)
    assert pipeline.start(settings, docs_only) is None
    skipped = tracker.pipeline(docs_only)
    assert (skipped.status, skipped.outcome) == (PipelineStatus.FINISHED, "skipped")
    assert skipped.reason == "skipped: no change to the model code"
    assert not (settings.home / "work" / docs_only).exists()

    model_change = bitbucket_push(client, settings, docs, model)
    step = pipeline.start(settings, model_change)
    assert step is not None and step.task is Task.RUN_ATTEMPT
    [attempt] = tracker.attempts(tracker.pipeline(model_change))
    assert attempt.config["dense_units"] == 32  # what the pushed commit holds


@pytest.mark.slow
def test_a_sample_push_to_the_served_webhook_is_trained_at_the_pushed_commit(
    tmp_path: Path, repo, allow_list, redis_url
):
    home = tmp_path / "ct"
    env = ct_env(
        CT_HOME=str(home),
        CT_BROKER_URL=redis_url,
        CT_REPOSITORIES_FILE=str(allow_list),
        CT_GIT_ALLOW_FILE="1",  # the repository is served over file://
        CT_TRUST_PUSHED_CODE="1",  # its pushes train on this machine, not in a container
        HOOK_SECRET="s3cret",
    )
    port = free_port()
    serve_log = open(tmp_path / "serve.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "ct_service.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=serve_log,
        stderr=subprocess.STDOUT,
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        sent = subprocess.run(
            [
                sys.executable,
                "-m",
                "ct_service.cli",
                "send-sample",
                f"http://127.0.0.1:{port}",
                "acme/models",
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert sent.returncode == 0, (
            sent.stdout + sent.stderr + (tmp_path / "serve.log").read_text()
        )
        status, answer = sent.stdout.split(" ", 1)
        assert status == "202"
        tracker = Tracker(Settings(home=home))
        pipeline_id = wait_for(  # its run, created by the worker
            lambda: tracker.pipeline_for_push(json.loads(answer)["pipeline_id"]),
            60,
            "the pushed pipeline's run",
            worker.log_path,
        )
        wait_finished(tracker, pipeline_id, worker.log_path)
    finally:
        worker.stop()
        server.terminate()
        server.wait(timeout=30)
        serve_log.close()
    finished = tracker.pipeline(pipeline_id)
    tip = repo[1][-1]
    assert finished.outcome == "promoted", finished.reason
    assert finished.spec.commit == tip
    [attempt] = tracker.attempts(finished)
    assert attempt.config["dense_units"] == 32
    store = f"sqlite:///{home}/mlflow.db"
    assert (
        mlflow.MlflowClient(store, store).get_run(attempt.run_id).data.params["dense_units"] == "32"
    )
    assert not (home / "work" / pipeline_id).exists()
