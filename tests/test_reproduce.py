"""`ct-service reproduce` end to end, as a person runs it: embedded (a real Celery
worker in the process, on kombu's in-memory broker), MLflow on SQLite, real git
repositories, LeNet trained on a copy of MNIST (a small subset) and digits in the
environment it declares. Each version is registered by a real `ct-service run`; each
reproduction trains it again and is compared with what the registry recorded."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import LENET, ROOT, ct_env, git, init_repository
from helpers import MlflowServer

from ct_service import run_tags
from ct_service.cli import main
from ct_service.settings import Settings
from ct_service.tracking import Tracker

pytestmark = pytest.mark.slow

DIGITS = ROOT / "projects" / "digits"
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
# one attempt on a small subset, stopped early once validation clears the target
LENET_PARAMS = {
    "conv_blocks": "1",
    "filters": "4",
    "dense_units": "16",
    "batch_size": "64",
    "epochs": "2",
    "max_train_samples": "3000",
}


@dataclass(frozen=True)
class Trained:
    home: Path
    env: dict[str, str]
    repository: Path
    data: Path  # the copy of MNIST the version trained on

    @property
    def tracker(self) -> Tracker:
        return Tracker(Settings(home=self.home))


def committed_copy(project: Path, repository: Path) -> Path:
    """The project copied into a new git repository and committed."""
    folder = repository / project.name
    shutil.copytree(project, folder, ignore=shutil.ignore_patterns("__pycache__", "mlruns"))
    init_repository(repository)
    git(repository, "add", "-A")
    git(repository, "commit", "-q", "-m", f"{project.name} as it trains")
    return folder


def ct(trained_env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ct_service.cli", *arguments],
        env=trained_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def lenet_run(env: dict[str, str], project: Path, data: Path, **extra: str) -> None:
    params = {**LENET_PARAMS, "data": str(data), **extra}
    dash_p = [arg for name, value in params.items() for arg in ("-P", f"{name}={value}")]
    done = ct(env, "run", str(project), "--json", *dash_p)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def lenet(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Trained:
    """lenet version 1, @production: LeNet at a commit of its own repository, on a
    copy of MNIST (one attempt, stopped early once validation clears 0.5)."""
    root = tmp_path_factory.mktemp("reproduce")
    project = committed_copy(LENET, root / "repository")
    data = root / "mnist"
    shutil.copytree(mnist_dir, data)
    home = root / "ct"
    env = ct_env(CT_HOME=str(home), CT_MAX_ATTEMPTS="1", CT_TARGET_THRESHOLD="0.5")
    lenet_run(env, project, data)
    return Trained(home, env, root / "repository", data)


def reproductions(tracker: Tracker) -> list:
    experiments = [e.experiment_id for e in tracker.client.search_experiments()]
    return tracker.client.search_runs(experiments, "tags.`ct.kind` = 'reproduction'")


def test_lenet_reproduces_within_half_a_point_as_a_run_linked_to_the_version(
    lenet: Trained,
) -> None:
    client = lenet.tracker.client
    original = client.get_model_version_by_alias("lenet", "production")
    done = ct(lenet.env, "reproduce", "lenet", "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout)
    print(f"LeNet (small subset): {result['reason']}")
    assert result["outcome"] == "reproduced"
    assert abs(result["delta"]) <= 0.005
    assert result["recorded"] == client.get_run(original.run_id).data.metrics["test_accuracy"]
    assert result["data"]["checked"] and not result["data"]["changed"]
    assert set(result["data"]["now"]) == {"mnist-train", "mnist-validation", "mnist-test"}
    assert result["source"] == str(lenet.repository)
    # It trained what the version's run kept: an attempt stopped early, its epochs.
    kept = client.get_run(original.run_id).data.tags[run_tags.CHECKPOINT_LAST_EPOCH]
    assert result["config"]["epochs"] == int(kept)
    # Nothing in the registry moved, nothing was registered.
    assert [str(v.version) for v in client.search_model_versions("name = 'lenet'")] == ["1"]
    assert client.get_model_version("lenet", "1").aliases == ["production"]
    # The reproduction is its own run, linked both ways, in the project's experiment.
    run = client.get_run(result["run_id"])
    tags = run.data.tags
    assert tags[run_tags.KIND] == "reproduction"
    assert (tags[run_tags.REPRODUCES_MODEL], tags[run_tags.REPRODUCES_VERSION]) == ("lenet", "1")
    assert tags[run_tags.REPRODUCES_RUN] == original.run_id
    assert tags[run_tags.REPRODUCTION_OUTCOME] == "reproduced"
    assert run.info.experiment_id == client.get_run(original.run_id).info.experiment_id
    version_tags = client.get_model_version("lenet", "1").tags
    assert version_tags[run_tags.REPRODUCTIONS] == result["run_id"]
    assert version_tags[run_tags.REPRODUCTION_LAST].startswith(f"{result['run_id']}: reproduced")
    # It is neither a pipeline nor an attempt: status and the policy never see it.
    assert all(p.id != result["run_id"] for p in lenet.tracker.recent_pipelines())


def test_what_cannot_be_reproduced_is_named_before_anything_is_created(
    lenet: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("CT_HOME", str(lenet.home))
    before = len(reproductions(lenet.tracker))
    for arguments, says in [
        (["nosuch"], "no registered model 'nosuch' (lenet"),
        (["lenet/9"], "lenet/9: no such version"),
        (["lenet@candidate"], "lenet@candidate: no such version"),
        (["lenet", "--from", str(tmp_path)], f"{tmp_path} is not a git repository that holds"),
        (["lenet", "--tolerance", "-1"], "--tolerance must be 0 or more"),
        (["lenet/x"], "names no model version"),
    ]:
        assert main(["reproduce", *arguments]) == 2
        assert says in capsys.readouterr().err
    assert len(reproductions(lenet.tracker)) == before
    monkeypatch.setenv("CT_HOME", str(tmp_path / "empty"))
    assert main(["reproduce", "lenet"]) == 2
    assert "no store at" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "mlflow.db").exists()


def test_a_version_without_a_recorded_commit_is_a_clear_error(
    lenet: Trained, tmp_path: Path
) -> None:
    """A version trained from a folder that is not a git checkout records no commit:
    nothing could fetch its code again."""
    folder = tmp_path / "lenet"
    shutil.copytree(LENET, folder, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**lenet.env, "CT_MODEL_NAME": "uncommitted", "CT_TARGET_THRESHOLD": "0.1"}
    lenet_run(env, folder, lenet.data, epochs="1", max_train_samples="1000")
    before = len(reproductions(lenet.tracker))
    done = ct(env, "reproduce", "uncommitted")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (
        f"error: uncommitted version 1 records no commit (its project {folder} was not a git "
        "checkout when it trained): its code cannot be fetched again"
    )
    assert len(reproductions(lenet.tracker)) == before


@pytest.fixture
def changed_data(lenet: Trained) -> Iterator[Path]:
    """The training images of the version's data folder inverted, then put back."""
    images = lenet.data / TRAIN_IMAGES
    kept = images.read_bytes()
    raw = gzip.decompress(kept)
    images.write_bytes(gzip.compress(raw[:16] + raw[16:].translate(bytes(range(255, -1, -1)))))
    yield images
    images.write_bytes(kept)


def test_a_changed_data_folder_is_refused_with_the_digest_difference(
    lenet: Trained, changed_data: Path
) -> None:
    client = lenet.tracker.client
    original = client.get_run(client.get_model_version("lenet", "1").run_id)
    recorded = {i.dataset.name: i.dataset.digest for i in original.inputs.dataset_inputs}
    done = ct(lenet.env, "reproduce", "lenet/1")
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    print(done.stdout)
    assert f"refused: the data changed (mnist-train {recorded['mnist-train']} recorded, " in (
        done.stdout
    )
    assert "--allow-other-data compares anyway" in done.stdout
    allowed = ct(lenet.env, "reproduce", "lenet/1", "--allow-other-data", "--json")
    assert allowed.returncode in (0, 3), allowed.stdout[-3000:] + allowed.stderr[-3000:]
    result = json.loads(allowed.stdout)
    assert result["outcome"] in ("reproduced", "differs")
    assert "on other data (--allow-other-data)" in result["reason"]
    # the validation split is taken from the training images: it changed too
    changed = [d["name"] for d in result["data"]["differences"]]
    assert changed == ["mnist-train", "mnist-validation"]
    listed = client.get_model_version("lenet", "1").tags[run_tags.REPRODUCTIONS].split(",")
    refused = done.stdout.split("reproduction run ", 1)[1].split(":", 1)[0]
    assert listed[-2:] == [refused, result["run_id"]]  # both listed on the version
    assert client.get_model_version("lenet", "1").aliases == ["production"]


def test_digits_reproduces_in_the_environment_it_declares(tmp_path: Path) -> None:
    """scikit-learn with a seed: the same configuration gives the same model. The store
    is an `mlflow server`: digits' declared environment installs the newest MLflow its
    python_env.yaml allows, which would migrate a SQLite store it opened directly."""
    project = committed_copy(DIGITS, tmp_path / "repository")
    home = tmp_path / "ct"
    home.mkdir()
    server = MlflowServer(home)
    try:
        env = ct_env(
            CT_HOME=str(home), MLFLOW_ENV_ROOT=str(home / "envs"), CT_TRACKING_URI=server.url
        )
        done = ct(env, "run", str(project), "--threshold", "0.5", "--max-attempts", "1", "--json")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        again = ct(env, "reproduce", "digits", "--json")
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        result = json.loads(again.stdout)
        print(f"digits: {result['reason']}")
        assert result["outcome"] == "reproduced"
        assert result["delta"] == 0.0
        assert result["environment"] == (
            "local: it declares python_env.yaml: an environment built from it by uv"
        )
        assert result["data"]["checked"] is False  # digits logs no dataset: nothing recorded
        settings = Settings(home=home, tracking_uri=server.url, registry_uri=server.url)
        run = Tracker(settings).client.get_run(result["run_id"])
        assert run.data.tags["sklearn.version"] == "1.5.2"  # its declared environment's
    finally:
        server.stop()


@pytest.mark.docker
def test_digits_trained_in_docker_reproduces_in_the_same_image(tmp_path: Path) -> None:
    """The version trained in a container (CT_EXECUTION=docker, an image built from
    digits' python_env.yaml) is trained again in a container of the same image, its
    code only there, logging through the gateway; nothing registered or moved."""
    project = committed_copy(DIGITS, tmp_path / "repository")
    home = tmp_path / "ct"
    env = ct_env(
        CT_HOME=str(home),
        CT_EXECUTION="docker",
        CT_DOCKER_BASE_IMAGE="ct-base:bookworm",
        CT_DOCKER_BUILD_NETWORK="host",  # this machine's engine runs without NAT
        CT_DOCKER_CA_FILE="/etc/ssl/certs/ca-certificates.crt",
    )
    done = ct(env, "run", str(project), "--threshold", "0.5", "--max-attempts", "1", "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    again = ct(env, "reproduce", "digits/1", "--json")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    result = json.loads(again.stdout)
    print(f"digits in Docker: {result['reason']}")
    assert result["outcome"] == "reproduced" and result["delta"] == 0.0
    assert result["environment"].startswith("docker, the same image ct-env/digits:")
    tracker = Tracker(Settings(home=home))
    run = tracker.client.get_run(result["run_id"])
    assert run.data.tags[run_tags.EXECUTOR] == "docker"
    versions = tracker.client.search_model_versions("name = 'digits'")
    assert len(versions) == 1  # nothing registered
    assert str(tracker.client.get_model_version_by_alias("digits", "production").version) == "1"
