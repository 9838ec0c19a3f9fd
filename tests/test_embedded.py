"""`ct-service run` with nothing configured (no broker, no tracking server): the
Celery steps run on an in-process worker over kombu's in-memory transport, MLflow
is a local SQLite file. Also the root MLproject (`mlflow run .`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from conftest import LENET, ROOT, ct_env, free_port, mlflow_run

SMTP_PASSWORD, WEBHOOK_TOKEN = "SMTP-PASSWORD-4711", "WEBHOOK-TOKEN-4711"


@pytest.mark.slow
def test_a_crashing_attempt_is_recorded_and_a_spent_budget_promotes_nothing(
    tmp_path: Path, mnist_dir: Path
):
    closed = str(free_port())  # nothing listens there: both notifiers fail
    env = ct_env(
        CT_HOME=str(tmp_path / "ct"),
        CT_SMTP_HOST="127.0.0.1",
        CT_SMTP_PORT=closed,
        CT_SMTP_SECURITY="starttls",  # a login needs TLS
        CT_SMTP_USER="ct",
        CT_SMTP_PASSWORD=SMTP_PASSWORD,
        CT_MAIL_TO="ops@example.com",
        CT_NOTIFY_WEBHOOK_URL=f"http://127.0.0.1:{closed}/hooks/{WEBHOOK_TOKEN}",
    )
    # conv_blocks=9 cannot work on 28x28 images (--force: it is outside the search
    # space, which is checked before anything starts): attempt 1 crashes with its reason and
    # the policy moves back into the search space; the tiny rest cannot reach 80%.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ct_service.cli",
            "run",
            str(LENET),
            "-P",
            "conv_blocks=9",
            "-P",
            "max_train_samples=500",
            "-P",
            "epochs=1",
            "-P",
            "learning_rate=0.0001",
            "-P",
            f"data={mnist_dir}",
            "--max-attempts",
            "2",
            "--force",  # conv_blocks=9 lies outside the search space: train it anyway
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = result.stdout
    assert result.returncode == 3, out + result.stderr  # target not reached
    assert "failed: error: conv_blocks must be between 1 and 4 for 28x28 input, got 9" in out
    assert "conv_blocks 9 -> 4" in out
    # progress as it happened: epoch n/N, elapsed and the time left (piped: plain lines)
    assert re.search(r"epoch 1/1: loss=\S+ .*\(\d+:\d\d elapsed, about 0:00 left\)", out), out
    assert "decision: stop: budget spent: 2 of 2 attempts" in out
    assert "budget-exhausted" in out
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/ct/mlflow.db" in out

    store = f"sqlite:///{tmp_path}/ct/mlflow.db"
    client = mlflow.MlflowClient(store, store)
    [pipeline] = client.search_runs(
        [client.get_experiment_by_name("ct/lenet").experiment_id], "tags.`ct.kind` = 'pipeline'"
    )
    assert pipeline.data.tags["ct.outcome"] == "budget-exhausted"
    # the failing notifiers are recorded and did not fail the pipeline
    assert (
        pipeline.data.tags["ct.notify.email"]
        == "failed: ConnectionRefusedError: Connection refused"
    )
    assert pipeline.data.tags["ct.notify.webhook"].startswith("failed: ")
    attempts = sorted(
        client.search_runs([pipeline.info.experiment_id], "tags.`ct.kind` = 'attempt'"),
        key=lambda r: r.data.tags["ct.attempt"],
    )
    assert [a.data.tags["ct.status"] for a in attempts] == ["failed", "finished"]
    assert "conv_blocks must be between 1 and 4" in attempts[0].data.tags["ct.failure"]
    assert attempts[0].info.status == "FAILED"
    assert client.search_registered_models() == []  # nothing promoted
    log = client.download_artifacts(attempts[0].info.run_id, "logs", str(tmp_path))
    assert "conv_blocks must be between 1 and 4" in "".join(
        p.read_text() for p in Path(log).iterdir()
    )

    # no secret in the output, the logs, or anything MLflow holds
    recorded = [result.stdout, result.stderr]
    recorded += [p.read_text() for p in (tmp_path / "ct" / "logs").iterdir()]
    for run in [pipeline, *attempts]:
        recorded += [str(run.data.params), str(run.data.tags)]
    for secret in (SMTP_PASSWORD, WEBHOOK_TOKEN):
        assert not [text for text in recorded if secret in text]


@pytest.mark.integration
def test_bad_input_is_refused_before_anything_is_recorded(tmp_path: Path):
    env = ct_env(CT_HOME=str(tmp_path / "ct"))
    cases = [
        (
            ["run", str(LENET), "-P", "colour=blue"],
            "error: unknown parameter(s) colour; lenet has:",
        ),
        (["run", str(tmp_path)], "is not an MLflow project: it has no MLproject file"),
        (["run", str(LENET), "-P", "epochs"], "error: -P expects NAME=VALUE, got 'epochs'"),
        (
            ["run", str(LENET), "--threshold", "nan"],
            "error: target threshold must be a finite number",
        ),
        (
            ["run", str(LENET), "--max-wall-seconds", "-5"],
            "error: max_wall_seconds must be 0 (none) or more",
        ),
        (
            ["run", str(LENET), "--max-epochs", "-1"],
            "error: max_epochs must be 0 (none) or more, got -1",
        ),
    ]
    bad_space = tmp_path / "bad-space"
    shutil.copytree(LENET, bad_space)
    (bad_space / "ct.yaml").write_text("search_space:\n  filters: {role: width, low: 8, high: 2}\n")
    cases.append(
        (
            ["run", str(bad_space)],
            f"error: {bad_space / 'ct.yaml'}: search_space.filters: needs low <= high",
        )
    )
    for args, message in cases:
        result = subprocess.run(
            [sys.executable, "-m", "ct_service.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
    bad_setting = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "run", str(LENET)],
        env={**env, "CT_MAX_ATTEMPTS": "lots"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad_setting.returncode == 2
    assert bad_setting.stderr.strip() == "error: CT_MAX_ATTEMPTS must be a whole number; got 'lots'"
    assert not (tmp_path / "ct" / "mlflow.db").exists()


@pytest.mark.slow
def test_mlflow_run_of_the_root_project_adopts_its_run_as_the_pipeline(
    tmp_path: Path, mnist_dir: Path
):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = ct_env(MLFLOW_TRACKING_URI=uri, CT_HOME=str(tmp_path / "ct"))
    params = {"data": mnist_dir, "max_train_samples": 4000, "epochs": 3, "max_attempts": 3}
    result = mlflow_run(ROOT, params, env, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    client = mlflow.MlflowClient(uri, uri)
    runs = client.search_runs(["0"])
    [outer] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert outer.data.tags["ct.kind"] == "pipeline"
    assert outer.data.tags["mlflow.project.entryPoint"] == "main"
    assert outer.data.tags["ct.outcome"] == "promoted"
    assert outer.info.status == "FINISHED"
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == outer.info.run_id]
    assert nested and all(r.data.tags["ct.kind"] == "attempt" for r in nested)
    version = client.get_model_version_by_alias("lenet", "production")
    assert version.run_id in {r.info.run_id for r in nested}


@pytest.mark.integration
def test_processes_opening_a_new_sqlite_store_at_once_all_succeed(tmp_path: Path):
    """MLflow creates a new SQLite store's tables in every process that finds them
    missing; without the lock in Tracker, most of four processes starting together
    failed in alembic (measured: 11 of 12), or all of them when the store's folder
    did not exist yet."""
    script = (
        "import sys\n"
        "from ct_service.settings import Settings\n"
        "from ct_service.tracking import Tracker\n"
        "Tracker(Settings.from_env({'CT_HOME': sys.argv[1]})).client.search_experiments()\n"
    )
    home = tmp_path / "ct"  # not there yet, as for a worker's first intake
    opening = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(home)],
            env=ct_env(),
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in opening]
    assert [p.returncode for p in opening] == [0, 0, 0, 0], "\n".join(errors)[-3000:]
