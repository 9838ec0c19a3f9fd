"""The drift scenario end to end (issue #32 item 5; docs/data.md#the-drift-scenario),
all real: SeaweedFS's S3, Celery beat and a worker on Redis, MLflow, LeNet on MNIST.

LeNet trained on MNIST version 1 (in the bucket) is production. Version 2 (the same
images, a third rotated 30-60 degrees, a third inverted: benchmarks/mnist_drift.py)
is uploaded over it. Nobody calls anything: beat's scan finds the new version, one
pipeline retrains production's code on it (warm-started from production's weights,
`data_trigger: {start: weights}`), production is re-scored on version 2's test set,
and the retrained model is promoted because it beats production there, with both
numbers and the version in its decision, although production's own stored number
(scored on version 1) is higher than the winner's."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, WorkerProcess, ct_env
from seaweed import S3Server

from ct_service import run_tags
from ct_service.champion import Basis, ChampionScore
from ct_service.data_version import DataVersion
from ct_service.project import load_project
from ct_service.registry import PRODUCTION
from ct_service.search import epochs_trained
from ct_service.settings import Settings
from ct_service.tracking import Outcome, PipelineStatus, Tracker

sys.path.insert(0, str(ROOT / "benchmarks"))
import mnist_drift  # noqa: E402

SOURCE = "mnist/"


def upload(s3: S3Server, bucket: str, folder: Path) -> None:
    s3.upload(bucket, {f"{SOURCE}{f.name}": f.read_bytes() for f in folder.glob("*-ubyte.gz")})


@pytest.mark.slow
def test_a_shifted_upload_retrains_by_itself_and_the_winner_beats_production_on_it(
    tmp_path: Path, s3: S3Server, mnist_dir: Path, redis_url: str, services: list
) -> None:
    from helpers import SMALL, epochs_logged, lenet_declaring, run_to_production, wait_for

    bucket = f"drift-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    upload(s3, bucket, mnist_dir)
    project = lenet_declaring(tmp_path, f"s3://{bucket}/{SOURCE}", "data_trigger: {start: weights}")
    env = ct_env(
        CT_HOME=str(tmp_path / "ct"), CT_MAX_ATTEMPTS="3", CT_TARGET_THRESHOLD="0.5",
        CT_WATCHDOG="off", CT_DECAY_SCHEDULE="0", **s3.environment(bucket),
    )  # fmt: skip
    run_to_production(env, project, {**SMALL, "epochs": "1"})
    tracker = Tracker(Settings.from_env(env))
    production = tracker.client.get_model_version_by_alias("lenet", PRODUCTION)
    on_v1 = float(production.tags["ct.metric.test_accuracy"])

    shifted = tmp_path / "v2"
    mnist_drift.make_version_2(mnist_dir, shifted)
    upload(s3, bucket, shifted)  # the same keys, new content: version 2
    service = env | {"CT_BROKER_URL": redis_url, "CT_DATA_SCAN_SECONDS": "2"}
    services.append(WorkerProcess(service, tmp_path / "worker.log"))
    beat = WorkerProcess(service, tmp_path / "beat.log", "beat")
    services.append(beat)

    def data_pipeline_finished() -> list:
        started = [p for p in tracker.recent_pipelines() if p.tags.get(run_tags.TRIGGER) == "data"]
        return [p for p in started if p.status is PipelineStatus.FINISHED]

    [retrained] = wait_for(
        data_pipeline_finished, 900, "the data pipeline", tmp_path / "worker.log"
    )
    assert "ct.data.scan" in beat.log_path.read_text()  # started by beat's scan, not by hand
    v2 = DataVersion.from_tags(retrained.tags)
    assert v2 is not None and v2.digest != production.tags[run_tags.DATA_VERSION]
    assert retrained.tags[run_tags.TRIGGER_REASON].startswith(f"data changed: version {v2.short}")
    assert retrained.outcome == Outcome.PROMOTED.value, retrained.reason
    # its first attempt continued production's weights (data_trigger: {start: weights})
    # on version 2, from production's checkpoint, charged only the epoch it trained
    first = tracker.attempt_runs(retrained)[0]
    assert first.data.params["resume_from"] == production.run_id
    assert first.data.tags[run_tags.CONTINUES] == production.run_id
    assert first.data.tags["checkpoint.loaded_from"] == production.run_id
    assert float(first.data.params["epochs"]) == 2  # production's 1, then 1 more
    assert epochs_logged(tracker, first.info.run_id) == [2]  # after production's
    assert first.data.tags[run_tags.DATA_VERSION] == v2.digest
    assert first.data.tags[run_tags.EXECUTOR] == "local"
    attempts = tracker.attempts(retrained)
    assert epochs_trained(attempts[:1], load_project(project).space) == 1

    winner = tracker.client.get_model_version_by_alias("lenet", PRODUCTION)
    assert str(winner.version) != str(production.version)
    assert winner.tags[run_tags.DATA_VERSION] == v2.digest
    candidate = float(winner.tags["ct.metric.test_accuracy"])
    compared = ChampionScore.from_json(winner.tags[run_tags.COMPARISON])
    assert compared is not None and compared.basis is Basis.RESCORED
    assert compared.version == str(production.version) and compared.data_version == v2.digest
    assert compared.stored == pytest.approx(on_v1, abs=1e-4)
    on_v2 = compared.value
    assert on_v2 is not None
    print(f"production on v1 {on_v1:.4f}, on v2 {on_v2:.4f}; retrained on v2 {candidate:.4f}")
    # promoted because it beats production on version 2's test set, although
    # production's stored number (version 1's test set) is higher than the winner's
    assert on_v2 < candidate < on_v1
    decision = winner.tags[run_tags.DECISION]
    print(
        f"{retrained.tags[run_tags.TRIGGER_REASON]}\n{first.data.tags.get(run_tags.REASON)}\n{decision}"
    )
    for shown in (f"{candidate:.4g}", f"{on_v2:.4g}", v2.short, f"{on_v1:.4g}"):
        assert shown in decision, (shown, decision)
