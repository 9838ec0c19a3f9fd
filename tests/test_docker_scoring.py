"""Scoring a registered version in Docker (docs/data.md#scoring-a-model-on-a-data-version):
the project's `evaluate` entry point is pushed code, so under CT_EXECUTION=docker it
runs in the training executor's container with the model's folder and the data
version's folder mounted read-only, its own run's artifact folder and nothing else,
and it logs through the gateway scoped to its scoring run.

All real: digits (scikit-learn, seconds to train) declaring a data folder under
CT_DATA_DIRS, trained and promoted by an embedded `ct-service run` in Docker (once,
for the module), then scored in this process by `scoring.score` with the same
settings (its Docker executor, the local MLflow server it starts, the gateway).

Needs a Docker engine and a base image: `make docker-base`. The digits environment
image is built on the first run (pip installs its python_env.yaml) and reused after."""

from __future__ import annotations

import errno
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from helpers import docker_env

from ct_service import run_tags
from ct_service.data_spec import DataSpec
from ct_service.data_version import DataVersion, version_of
from ct_service.orchestration import scoring
from ct_service.registry import PRODUCTION
from ct_service.settings import Settings
from ct_service.tracking import Tracker

HOSTILE_EVALUATE = '''
"""evaluate.py's job, after trying what pushed code must not do; each outcome a tag."""
import os
import sys

import mlflow
import mlflow.pyfunc
import numpy as np
from mlflow import MlflowClient

from evaluate_honest import test_set

args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
tried = {}
for name, folder in (("model", args["--model-uri"]), ("data", args["--data"])):
    read_only = os.statvfs(folder).f_flag & os.ST_RDONLY
    tried[f"mount_{name}"] = "read-only" if read_only else "writable"
    try:
        with open(os.path.join(folder, "planted.txt"), "w") as planted:
            planted.write("pushed code was here")
        tried[f"write_{name}"] = "written"
    except OSError as error:
        tried[f"write_{name}"] = f"failed: errno {error.errno}"
try:
    MlflowClient().set_registered_model_alias("digits", "hijacked", "1")
    tried["registry"] = "changed"
except Exception as error:
    tried["registry"] = f"failed: {type(error).__name__}"
try:
    MlflowClient().create_model_version("digits", args["--model-uri"])
    tried["new_version"] = "created"
except Exception as error:
    tried["new_version"] = f"failed: {type(error).__name__}"
features, labels = test_set(args["--data"])
predicted = np.asarray(mlflow.pyfunc.load_model(args["--model-uri"]).predict(features))
with mlflow.start_run():
    mlflow.set_tags({f"tried.{key}": value for key, value in tried.items()})
    mlflow.log_metric("test_accuracy", float((predicted == labels).mean()))
'''


@dataclass(frozen=True)
class Trained:
    """digits v1 in production, trained in Docker on the folder's first version."""

    settings: Settings
    tracker: Tracker
    project: Path
    current: Path  # the declared data folder, rewritten per data version
    test_x: np.ndarray
    test_y: np.ndarray
    stored: float  # v1's test_accuracy, as training logged it on the first version


def write_version(settings: Settings, folder: Path, train: tuple, test: tuple) -> DataVersion:
    """A data version of digits (train.csv and test.csv: 64 pixels and `label`)."""
    import pandas as pd

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, (features, labels) in (("train.csv", train), ("test.csv", test)):
        table = pd.DataFrame(features, columns=[f"pixel_{i}" for i in range(64)])
        table["label"] = labels
        table.to_csv(folder / name, index=False)
    return version_of(settings, DataSpec("data", str(folder)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, docker_client) -> Trained:
    sys.path.insert(0, str(ROOT / "projects" / "digits"))
    try:
        from train import split
    finally:
        sys.path.remove(str(ROOT / "projects" / "digits"))
    top = tmp_path_factory.mktemp("docker-scoring").resolve()
    roots, home, project = top / "data", top / "ct", top / "digits"
    current = roots / "digits"
    shutil.copytree(
        ROOT / "projects" / "digits", project, ignore=shutil.ignore_patterns("__pycache__")
    )
    (project / "ct.yaml").write_text(f"data: {{param: data, source: '{current}'}}\n")
    current.mkdir(parents=True)
    env = {**docker_env(home), "CT_DATA_DIRS": str(roots), "CT_TARGET_THRESHOLD": "0.1"}
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("CT_")})
    train_x, test_x, train_y, test_y = split()
    write_version(settings, current, (train_x, train_y), (test_x, test_y))
    done = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "run", str(project), "--json",
         "-P", "n_estimators=4", "-P", "max_depth=2"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert json.loads(done.stdout)["outcome"] == "promoted"
    tracker = Tracker(settings)
    [attempt] = tracker.client.search_runs(
        [tracker.client.get_experiment_by_name("ct/digits").experiment_id],
        "tags.`ct.kind` = 'attempt'",
    )
    assert attempt.data.tags[run_tags.EXECUTOR] == "docker"
    assert str(tracker.client.get_model_version_by_alias("digits", PRODUCTION).version) == "1"
    stored = attempt.data.metrics["test_accuracy"]
    return Trained(settings, tracker, project, current, test_x, test_y, stored)


def mounts(log: Path) -> set[str]:
    """The container's mounts, as the executor's first log line lists them."""
    found = re.search(r"; mounts: (.*?); command: ", log.read_text())
    assert found, log.read_text()[:2000]
    return set(found.group(1).split(", "))


def log_of(trained: Trained, score: scoring.Score) -> Path:
    return trained.settings.home / "logs" / f"score-{score.run_id}.log"


def containers_created_since(docker_client, since: float, run_ids: set[str]) -> list[str]:
    names = {f"ct-{run_id}" for run_id in run_ids}
    events = docker_client.events(
        since=int(since), until=int(time.time()) + 1,
        filters={"type": "container", "event": "create"}, decode=True,
    )  # fmt: skip
    return [e["Actor"]["Attributes"]["name"] for e in events
            if e["Actor"]["Attributes"].get("name") in names]  # fmt: skip


@pytest.mark.slow
@pytest.mark.docker
def test_production_is_scored_in_a_container_with_its_model_and_data_read_only(
    trained: Trained, docker_client
) -> None:
    """The value is right: the second version's test set is the first's plus half as
    many rows again labelled 10, a class no digit has, so the model's accuracy on it
    is exactly the one training logged times n / (n + m) (the model itself cannot be
    loaded here: it pins scikit-learn 1.5.2, its image's). The run records the method
    and the executor; the container's only read-only mounts were the model and the
    data, its writable ones its run's own (the executor's mount list); a second score
    of the same (version, data) reuses the run: the engine created no container."""
    n = len(trained.test_y)
    extra = np.random.default_rng(1).choice(n, n // 2, replace=False)
    test_x = np.concatenate([trained.test_x, trained.test_x[extra]])
    test_y = np.concatenate([trained.test_y, np.full(len(extra), 10)])
    second = write_version(
        trained.settings, trained.current, (trained.test_x, trained.test_y), (test_x, test_y)
    )

    found = scoring.score(trained.settings, trained.tracker, "digits", "1", second)

    expected = trained.stored * n / (n + len(extra))
    assert found.failure == "" and found.value == pytest.approx(expected, abs=1e-9)
    assert found.method == scoring.Method.ENTRY_POINT.value == "evaluate entry point"
    run = trained.tracker.client.get_run(found.run_id)
    assert run.data.tags[run_tags.SCORE_METHOD] == "evaluate entry point"
    assert run.data.tags[run_tags.EXECUTOR] == "docker"
    assert run.data.tags[run_tags.CONTAINER] == f"ct-{found.run_id}"
    assert run.data.tags[run_tags.DATA_VERSION] == second.digest
    assert run_tags.REFUSED not in run.data.tags  # the honest evaluate asked nothing else
    # read-only: exactly the model and the data, at their paths; writable: only the
    # scoring run's own folders (its artifacts, its code's copy, its models' staging)
    model, data = scoring.model_files(trained.settings, "digits", "1"), trained.current
    own = run.info.artifact_uri.removeprefix("file://")
    found_mounts = mounts(log_of(trained, found))
    assert {m for m in found_mounts if m.endswith(":ro")} == {
        f"{model}:{model}:ro", f"{data}:{data}:ro"
    }  # fmt: skip
    writable = {m.split(":")[0] for m in found_mounts if m.endswith(":rw")}
    assert own in writable and all(found.run_id in path for path in writable), found_mounts
    assert len(writable) + 2 == len(found_mounts)
    assert containers_created_since(docker_client, run.info.start_time / 1000 - 1,
                                    {found.run_id}) == [f"ct-{found.run_id}"]  # fmt: skip
    assert not docker_client.containers.list(all=True, filters={"name": f"ct-{found.run_id}"})

    before = time.time()
    again = scoring.score(trained.settings, trained.tracker, "digits", "1", second)
    assert again.run_id == found.run_id and again.value == found.value
    experiment = run.info.experiment_id
    runs = trained.tracker.client.search_runs([experiment], "tags.`ct.kind` = 'score'")
    assert [r.info.run_id for r in runs] == [found.run_id]
    assert containers_created_since(docker_client, before - 1, {found.run_id}) == []


@pytest.mark.slow
@pytest.mark.docker
def test_a_hostile_evaluate_cannot_write_its_inputs_or_touch_the_registry(
    trained: Trained,
) -> None:
    """An evaluate that tries to plant a file in the model's and the data's folders,
    to set an alias and to create a model version, then scores honestly: both folders
    are read-only mounts as the container sees them (statvfs) and both writes fail;
    both registry calls fail (the gateway refuses them and the scoring run's
    ct.refused says so); the registry's aliases and versions are unchanged; and the
    score is still recorded (what the code does: scoring takes the metric the run
    logged; refusals are recorded, not fatal)."""
    third = write_version(
        trained.settings,
        trained.current,
        (trained.test_x, trained.test_y),
        (trained.test_x, trained.test_y),
    )
    evaluate = trained.project / "evaluate.py"
    honest = evaluate.read_text()
    (trained.project / "evaluate_honest.py").write_text(honest)
    evaluate.write_text(HOSTILE_EVALUATE)
    try:
        found = scoring.score(trained.settings, trained.tracker, "digits", "1", third)
    finally:
        evaluate.write_text(honest)
        (trained.project / "evaluate_honest.py").unlink()

    client = trained.tracker.client
    tags = client.get_run(found.run_id).data.tags
    assert tags["tried.mount_model"] == tags["tried.mount_data"] == "read-only", tags
    # the files are the service's too (EACCES before EROFS for a non-root user)
    refusals = {f"failed: errno {errno.EACCES}", f"failed: errno {errno.EROFS}"}
    assert {tags["tried.write_model"], tags["tried.write_data"]} <= refusals, tags
    assert tags["tried.registry"].startswith("failed") and tags["tried.new_version"].startswith(
        "failed"
    ), tags
    refused = tags[run_tags.REFUSED]
    assert refused.startswith("2 calls outside its own run refused; first: ")
    assert "registered-models" in refused and "\n" not in refused
    model_folder = scoring.model_files(trained.settings, "digits", "1")
    assert not (model_folder / "planted.txt").exists()
    assert not (trained.current / "planted.txt").exists()
    registered = client.get_registered_model("digits")
    assert {k: str(v) for k, v in registered.aliases.items()} == {PRODUCTION: "1"}
    assert [str(v.version) for v in client.search_model_versions("name = 'digits'")] == ["1"]
    assert found.failure == "" and found.value is not None and found.value > 0.5
    assert tags[run_tags.EXECUTOR] == "docker" and tags[run_tags.STATUS] == "finished"
