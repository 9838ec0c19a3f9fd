"""Nothing is lost between a push and its pipeline: a burst of signed pushes reaches
the webhook (gunicorn, as deployed) while the MLflow server and every worker are
stopped; then they start, and every push becomes exactly one pipeline."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ROOT, WorkerProcess, ct_env, free_port, git, init_repository
from helpers import MlflowServer, wait_for

from ct_service import run_tags
from ct_service.settings import Settings
from ct_service.tracking import Tracker
from ct_service.webhook.push import Provider, sign

PUSHES = 30
SECRET = "burst-secret"


def commits_of_a_quick_project(repo: Path, count: int) -> list[str]:
    """`count` commits, each changing models/quick/train.py (a project that logs
    its accuracy and ends)."""
    project = repo / "models" / "quick"
    project.mkdir(parents=True)
    (project / "MLproject").write_text(
        "name: quick\nentry_points:\n  main:\n    command: python train.py\n"
    )
    init_repository(repo)
    commits = []
    for number in range(count):
        (project / "train.py").write_text(
            f"import mlflow\nmlflow.log_metric('test_accuracy', 0.9)  # version {number}\n"
        )
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", f"version {number}")
        commits.append(git(repo, "rev-parse", "HEAD"))
    return commits


def send(url: str, before: str, after: str, delivery: str) -> tuple[int, dict]:
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "before": before,
            "after": after,
            "repository": {"full_name": "acme/models"},
            "commits": [{"id": after, "added": [], "modified": ["models/quick/train.py"]}],
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        **sign(Provider.GITHUB, body, SECRET),
    }
    request = urllib.request.Request(f"{url}/hooks", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_a_burst_while_mlflow_and_the_workers_are_down_becomes_one_pipeline_per_push(
    tmp_path: Path, redis_url: str
) -> None:
    repo = tmp_path / "repo"
    commits = commits_of_a_quick_project(repo, PUSHES)
    allow_list = tmp_path / "repositories.yaml"
    allow_list.write_text(
        "repositories:\n  - {name: acme/models, provider: github, secret_env: HOOK_SECRET,"
        f" url: '{repo.as_uri()}', project: models/quick, target: {{threshold: 0.95}}}}\n"
    )
    mlflow_server = MlflowServer(tmp_path)
    mlflow_server.stop()  # down for the whole burst
    home = tmp_path / "ct"
    env = ct_env(
        CT_HOME=str(home),
        CT_BROKER_URL=redis_url,
        CT_TRACKING_URI=mlflow_server.url,
        CT_REPOSITORIES_FILE=str(allow_list),
        CT_GIT_ALLOW_FILE="1",  # the repository is served over file://
        CT_TRUST_PUSHED_CODE="1",  # its pushes train on this machine, not in a container
        HOOK_SECRET=SECRET,
        CT_MAX_ATTEMPTS="1",  # the newest push trains once (0.9, short of 0.95) and ends
    )
    port = free_port()
    webhook_log = (tmp_path / "webhook.log").open("wb")
    webhook = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:ct_service.webhook.gunicorn_conf",
         "-b", f"127.0.0.1:{port}"],
        env=env, cwd=ROOT, stdout=webhook_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    worker = None
    try:
        wait_for(lambda: answers(f"{url}/healthz"), 60, "the webhook", tmp_path / "webhook.log")
        befores = ["0" * 40, *commits[:-1]]
        with ThreadPoolExecutor(4) as pool:  # the burst, four senders at once
            first = list(pool.map(send, [url] * PUSHES, befores, commits,
                                  [f"d-{n}" for n in range(PUSHES)]))  # fmt: skip
            again = list(pool.map(send, [url] * PUSHES, befores, commits,
                                  [f"d-{n}" for n in range(PUSHES)]))  # fmt: skip
        assert [status for status, _ in first] == [202] * PUSHES, first
        assert [status for status, _ in again] == [200] * PUSHES, again  # redelivered
        pushed = [body["pipeline_id"] for _, body in first]
        assert [body["pipeline_id"] for _, body in again] == pushed
        assert len(set(pushed)) == PUSHES
        assert not answers(f"{mlflow_server.url}/health")  # it was down all along

        mlflow_server.start()
        worker = WorkerProcess(env, tmp_path / "worker.log")
        tracker = Tracker(Settings(home=home, tracking_uri=mlflow_server.url))

        def all_finished() -> list | None:
            experiment = tracker.client.get_experiment_by_name("ct/quick")
            if experiment is None:
                return None
            runs = tracker.client.search_runs(
                [experiment.experiment_id], f"tags.`{run_tags.KIND}` = 'pipeline'"
            )
            done = [r for r in runs if r.data.tags.get(run_tags.STATUS) == "finished"]
            return runs if len(runs) >= PUSHES and len(done) == len(runs) else None

        runs = wait_for(all_finished, 600, "every pushed pipeline to finish", worker.log_path)
        by_arrival = sorted(runs, key=lambda r: int(r.data.tags[run_tags.SOURCE_SEQUENCE]))
        trained = tracker.attempts(tracker.pipeline(by_arrival[-1].info.run_id))
    finally:
        if worker is not None:
            worker.stop()
        webhook.terminate()
        webhook.wait(timeout=30)
        webhook_log.close()
        mlflow_server.stop()
    by_push = collections.Counter(r.data.tags[run_tags.PUSH_ID] for r in runs)
    assert set(by_push) == set(pushed) and set(by_push.values()) == {1}  # one each
    assert {r.data.tags[run_tags.COMMIT] for r in runs} == set(commits)
    # the pushes were numbered as they arrived (four senders at once): the last one
    # trains (its attempt at its commit), every older one queued behind it is superseded
    outcomes = [r.data.tags[run_tags.OUTCOME] for r in by_arrival]
    reason = by_arrival[-1].data.tags[run_tags.REASON]
    assert outcomes == ["superseded"] * (PUSHES - 1) + ["budget-exhausted"], reason
    assert [a.metric for a in trained] == [0.9]
