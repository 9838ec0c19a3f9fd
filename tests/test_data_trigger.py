"""The data trigger (docs/data.md): a new version of production's declared data
starts exactly one pipeline, by the scan and by the signed data hook; the same
version again (a second scan, a redelivered event) starts nothing; a bad signature
starts nothing. Real SeaweedFS, Redis, MLflow on SQLite and a Celery worker process."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import redis
from conftest import ROOT, WorkerProcess, ct_env
from helpers import lenet_declaring, wait_for
from mlflow.entities import Param
from seaweed import SERVICE_KEYS, S3Server

from ct_service import run_tags
from ct_service.data_cache import version_folder
from ct_service.data_version import DataVersion
from ct_service.exceptions import ProjectError
from ct_service.orchestration import pipeline
from ct_service.orchestration.data_trigger import check, pipeline_with_data
from ct_service.orchestration.production_start import check_checkpoint_run
from ct_service.orchestration.queue import enqueue, make_celery
from ct_service.project import load_project
from ct_service.registry import PRODUCTION
from ct_service.repositories import Provider
from ct_service.search import epochs_trained
from ct_service.settings import DataSettings, Settings
from ct_service.tracking import Tracker
from ct_service.webhook import push

HOOK_SECRET = "data-hook-secret-1"


@pytest.fixture
def world(tmp_path: Path, s3: S3Server, redis_url: str):
    """A bucket with version 1 of the data, LeNet declaring it, and a production model
    that trained on version 1 (registered as promote() registers one: its pipeline's
    data tags, its pipeline id)."""
    bucket = f"mnist-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    s3.upload(bucket, {f"v/part-{i}": f"images {i}".encode() for i in range(3)})
    project = lenet_declaring(tmp_path, f"s3://{bucket}/v/")
    settings = Settings(
        home=tmp_path / "ct",
        broker_url=redis_url,
        data=DataSettings(
            s3_endpoint=s3.url,
            s3_access_key_id=SERVICE_KEYS[0],
            s3_secret_access_key=SERVICE_KEYS[1],
            buckets=(bucket,),
            hook_secret=HOOK_SECRET,
        ),
    )
    first = pipeline.create(settings, str(project))
    tracker = Tracker(settings)
    tags = tracker.pipeline(first).tags
    pinned = DataVersion.from_tags(tags)
    assert pinned is not None and tracker.pipeline(first).spec.initial_config == {
        "data": str(version_folder(settings, pinned))
    }
    client = tracker.client
    client.create_registered_model("lenet")
    version = client.create_model_version(
        "lenet", f"runs:/{first}/model", first,
        tags={run_tags.PIPELINE_ID: first, **pinned.to_tags()},
    )  # fmt: skip
    client.set_registered_model_alias("lenet", PRODUCTION, version.version)
    return settings, tracker, bucket, pinned, project


def data_pipelines(tracker: Tracker) -> list:
    return [p for p in tracker.recent_pipelines(100) if p.tags.get(run_tags.TRIGGER) == "data"]


@pytest.mark.integration
def test_a_new_version_starts_one_pipeline_and_the_same_version_none(world, s3: S3Server) -> None:
    settings, tracker, bucket, pinned, _ = world
    report, steps = check(settings)
    assert report.unchanged == ["lenet"] and not steps  # production's own version
    s3.upload(bucket, {"v/part-1": b"images 1, relabelled"})
    report, steps = check(settings)
    assert list(report.started) == ["lenet"] and len(steps) == 1
    started = tracker.pipeline(report.started["lenet"])
    version = DataVersion.from_tags(started.tags)
    assert version is not None and version.digest != pinned.digest
    assert started.tags[run_tags.TRIGGER_REASON].startswith(
        f"data changed: version {version.short} of s3://{bucket}/v/"
    )
    assert f"trained on {pinned.short}" in started.tags[run_tags.TRIGGER_REASON]
    assert started.spec.initial_config["data"] == str(version_folder(settings, version))
    assert started.spec.project_path == str(world[4].resolve())  # production's code
    again, steps = check(settings)  # a second scan
    assert not steps and again.known == {"lenet": started.id}
    hooked, steps = check(settings, [f"s3://{bucket}/v/part-1"])  # a redelivered event
    assert not steps and len(data_pipelines(tracker)) == 1
    elsewhere, steps = check(settings, [f"s3://{bucket}/other/file"])
    assert not steps and not elsewhere.known  # not its source: not even listed


@pytest.mark.integration
def test_an_unreadable_source_is_reported_and_starts_nothing(world, s3: S3Server) -> None:
    settings, tracker, bucket, _, _ = world
    s3.client().delete_object(Bucket=bucket, Key="v/part-0")
    s3.client().delete_object(Bucket=bucket, Key="v/part-1")
    s3.client().delete_object(Bucket=bucket, Key="v/part-2")
    report, steps = check(settings)
    assert not steps and f"s3://{bucket}/v/: no objects" in report.errors["lenet"]


def s3_event(bucket: str, key: str) -> bytes:
    """An event notification as S3-compatible stores send it (AWS's shape)."""
    return json.dumps(
        {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                      "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 9}}}]}
    ).encode()  # fmt: skip


@pytest.mark.integration
def test_the_signed_hook_starts_one_pipeline_and_a_bad_signature_none(
    world, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, services: list
) -> None:
    settings, tracker, bucket, _, _ = world
    (tmp_path / "repositories.yaml").write_text(
        "repositories:\n  - {name: acme/models, provider: github, url: https://example.com/a.git,"
        " secret_env: PUSH_SECRET, project: projects/lenet}\n"
    )
    monkeypatch.setenv("PUSH_SECRET", "push-secret-1")
    from dataclasses import replace

    from ct_service.webhook.app import create_app

    app = create_app(replace(settings, repositories_file=str(tmp_path / "repositories.yaml")))
    web = app.test_client()
    queue = redis.Redis.from_url(settings.broker_url)
    s3.upload(bucket, {"v/part-2": b"new images"})
    body = s3_event(bucket, "v/part-2")
    bad = web.post("/hooks/data", data=body, headers={"X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert bad.status_code == 401 and queue.llen("pipeline") == 0
    wrong_token = web.post("/hooks/data", data=body, headers={"Authorization": "Bearer nope"})
    assert wrong_token.status_code == 401 and queue.llen("pipeline") == 0
    worker = WorkerProcess(
        ct_env(
            CT_HOME=str(settings.home), CT_BROKER_URL=settings.broker_url, CT_WATCHDOG="off",
            **s3.environment(bucket),
        ),
        tmp_path / "worker.log",
    )  # fmt: skip
    services.append(worker)
    signed = web.post(
        "/hooks/data", data=body, headers=push.sign(Provider.GITHUB, body, HOOK_SECRET)
    )
    assert signed.status_code == 202, signed.json
    started = wait_for(lambda: data_pipelines(tracker), 120, "the data pipeline", worker.log_path)
    assert len(started) == 1
    again = web.post("/hooks/data", data=body, headers={"Authorization": f"Bearer {HOOK_SECRET}"})
    assert again.status_code == 202  # a redelivery: checked, nothing new
    wait_for(
        lambda: worker.log_path.read_text().count("ct.data.check") >= 4,  # received, succeeded x2
        120, "the second check", worker.log_path,
    )  # fmt: skip
    assert len(data_pipelines(tracker)) == 1
    version = DataVersion.from_tags(started[0].tags)
    assert (
        version is not None
        and pipeline_with_data(tracker, "lenet", version.digest) == started[0].id
    )


@pytest.mark.slow
def test_lenet_trains_on_its_declared_s3_data_and_records_the_version(
    tmp_path: Path, s3: S3Server, mnist_dir: Path
) -> None:
    """`ct-service run` (embedded) of LeNet whose ct.yaml declares MNIST on S3: the
    worker fetches it, training reads the read-only folder, and the pipeline, the
    attempt (tags and a dataset input) and the registered version record the version;
    `ct-service status` shows it."""
    import subprocess
    import sys

    from helpers import SMALL, run_to_production

    bucket = f"mnist-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    s3.upload(bucket, {f"v1/{f.name}": f.read_bytes() for f in mnist_dir.glob("*-ubyte.gz")})
    project = lenet_declaring(tmp_path, f"s3://{bucket}/v1/")
    env = ct_env(CT_HOME=str(tmp_path / "ct"), CT_MAX_ATTEMPTS="1", **s3.environment(bucket))
    run_to_production(env, project, {**SMALL, "epochs": "1"})
    settings = Settings(home=tmp_path / "ct")
    tracker = Tracker(settings)
    [finished] = tracker.recent_pipelines()
    version = DataVersion.from_tags(finished.tags)
    assert version is not None and version.objects == 4
    [attempt] = tracker.attempt_runs(finished)
    assert attempt.data.tags[run_tags.DATA_VERSION] == version.digest
    folder = str(version_folder(Settings(home=tmp_path / "ct"), version))
    assert attempt.data.params["data"] == folder
    inputs = {d.dataset.name: d.dataset for d in attempt.inputs.dataset_inputs}
    assert inputs["ct-data"].digest == version.digest[:12]
    assert inputs["mnist-train"].source.find(folder) >= 0  # LeNet read the fetched folder
    model = tracker.client.get_model_version_by_alias("lenet", PRODUCTION)
    assert model.tags[run_tags.DATA_VERSION] == version.digest
    assert model.tags[run_tags.DATA_SOURCE] == f"s3://{bucket}/v1/"
    status = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "status"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "data" in status.stdout.splitlines()[0] and version.short in status.stdout
    assert SERVICE_KEYS[1] not in json.dumps(attempt.data.params) + json.dumps(attempt.data.tags)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("*/5 * * * *", ""),
        ({"cron": "0 3 * * 1", "if_changed": True}, ""),
        ("61 * * * *", "Invalid end range"),
        ("* * *", "must have five fields"),
        ({"cron": "0 3 * * *", "if_changed": "yes"}, "if_changed must be true or false"),
        ({"cron": "0 3 * * *", "every": 1}, "unknown key"),
    ],
)
def test_a_schedule_is_read_by_celery_beats_crontab(spec: object, error: str) -> None:
    from ct_service.schedule import Schedule

    if not error:
        assert Schedule.from_spec(spec).crontab().is_due  # a real celery.schedules.crontab
        return
    with pytest.raises(ValueError, match=error):
        Schedule.from_spec(spec)


@pytest.mark.integration
def test_a_schedule_fires_once_a_tick_and_if_changed_skips(world, s3: S3Server) -> None:
    from datetime import datetime, timezone

    from ct_service.orchestration.schedules import beat_entries, fire
    from ct_service.schedule import Schedule

    settings, tracker, bucket, pinned, _ = world
    production = tracker.recent_pipelines(1)[0]
    tracker.set_tags(production.id, {run_tags.SCHEDULE: Schedule("* * * * *", True).to_json()})
    [entry] = beat_entries(settings).values()
    assert entry["task"] == "ct.schedule.fire" and entry["args"] == ("lenet", "* * * * *")
    at = datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc)
    assert fire(settings, "lenet", at) is None  # if_changed: production's commit and data
    s3.upload(bucket, {"v/part-0": b"more images"})
    later = datetime(2026, 12, 7, 3, 1, tzinfo=timezone.utc)
    step = fire(settings, "lenet", later)
    assert step is not None
    started = tracker.pipeline(step.args[0])
    assert started.tags[run_tags.TRIGGER] == "schedule"
    assert started.tags[run_tags.TRIGGER_REASON].startswith(
        "schedule * * * * *: production lenet v1's code, data "
    )
    assert fire(settings, "lenet", later) is None  # the same tick again (a redelivery)
    assert (
        fire(settings, "lenet", datetime(2026, 12, 7, 3, 2, tzinfo=timezone.utc)) is None
    )  # trained


def produced_by(tracker: Tracker, pipeline_id: str, params: dict[str, str]) -> str:
    """An attempt run of the production pipeline with `params` (logged as the service
    logs an attempt's), registered as a new version of lenet and aliased production,
    with the data tags of the version the pipeline trained on."""
    production = tracker.pipeline(pipeline_id)
    run = tracker.client.create_run(
        production.experiment_id,
        tags={run_tags.KIND: "attempt", run_tags.PIPELINE_ID: pipeline_id},
    )
    tracker.client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    version = tracker.client.create_model_version(
        "lenet", f"runs:/{run.info.run_id}/model", run.info.run_id,
        tags={run_tags.PIPELINE_ID: pipeline_id, **DataVersion.from_tags(production.tags).to_tags()},
    )  # fmt: skip
    tracker.client.set_registered_model_alias("lenet", PRODUCTION, version.version)
    return run.info.run_id


@pytest.mark.integration
def test_a_data_triggered_pipeline_starts_with_productions_configuration(
    world, s3: S3Server
) -> None:
    """Production v2 was trained with parameters other than the MLproject's defaults:
    the data-triggered pipeline's first attempt takes them (and the new data's
    folder), and says so; the one outside run its attempts may name as resume_from
    is production's."""
    settings, tracker, bucket, pinned, _ = world
    first = tracker.recent_pipelines(10)[-1].id
    trained = {"conv_blocks": "1", "filters": "16", "dense_units": "32", "epochs": "2"}
    production_run = produced_by(tracker, first, {**trained, "data": "/old", "resume_from": ""})
    s3.upload(bucket, {"v/part-2": b"images 2, more of them"})
    report, [step] = check(settings)
    started = tracker.pipeline(report.started["lenet"])
    assert started.tags[run_tags.WARM_START_RUN] == production_run
    assert started.tags[run_tags.WARM_START_VERSION] == "2"
    next_step = pipeline.start(settings, started.id)
    assert next_step is not None
    attempt = tracker.client.get_run(next_step.args[1])
    params = attempt.data.params
    assert {k: float(params[k]) for k in trained} == {k: float(v) for k, v in trained.items()}
    assert (params["filters"], params["dense_units"]) != ("6", "84")  # not the defaults
    version = DataVersion.from_tags(started.tags)
    assert version is not None and version.digest != pinned.digest
    assert params["data"] == str(version_folder(settings, version))  # the new version
    assert params["resume_from"] == ""  # ct.yaml asks for the configuration only
    assert attempt.data.tags[run_tags.REASON] == "warm start: production v2's configuration"
    started = tracker.pipeline(started.id)
    check_checkpoint_run(tracker, started, {"resume_from": production_run})
    check_checkpoint_run(tracker, started, {"resume_from": attempt.info.run_id})
    other = tracker.client.create_run(started.experiment_id, tags={run_tags.PIPELINE_ID: "x"})
    with pytest.raises(ProjectError, match=f"resume_from names run {other.info.run_id}, which"):
        check_checkpoint_run(tracker, started, {"resume_from": other.info.run_id})


@pytest.mark.slow
@pytest.mark.docker
def test_start_weights_continues_productions_lenet_on_the_new_data_in_docker(
    tmp_path: Path,
    s3: S3Server,
    mnist_dir: Path,
    redis_url: str,
    services: list,
    docker_client: object,
) -> None:
    """LeNet trained on MNIST v1 in S3 is production; its ct.yaml asks for
    `data_trigger: {start: weights}`. A new version of the data (one file packed
    again: new bytes) starts a pipeline, run by a real worker, whose first attempt
    loads production's checkpoint: resume_from is production's run, its first logged
    epoch comes after production's, it trained on the new version, and the budget
    charged only the epochs it trained. In Docker, the container reads production's
    checkpoint through its gateway grant and nothing of its is refused."""
    import gzip

    from helpers import QUICK_LENET, docker_env, epochs_logged, run_to_production, wait_finished

    bucket = f"mnist-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    files = {f"v/{f.name}": f.read_bytes() for f in mnist_dir.glob("*-ubyte.gz")}
    s3.upload(bucket, files)
    project = lenet_declaring(
        tmp_path, f"s3://{bucket}/v/", "data_trigger: {start: weights}", "stop_early: false"
    )
    env = docker_env(tmp_path / "ct", **s3.environment(bucket))
    run_to_production(env, project, QUICK_LENET)  # one epoch
    settings = Settings.from_env(env)
    tracker = Tracker(settings)
    production = tracker.client.get_model_version_by_alias("lenet", PRODUCTION)
    assert epochs_logged(tracker, production.run_id) == [1]
    name = next(k for k in files if "t10k-labels" in k)
    repacked = gzip.compress(gzip.decompress(files[name]), compresslevel=1)
    assert repacked != files[name]
    s3.upload(bucket, {name: repacked})

    env["CT_BROKER_URL"] = redis_url
    services.append(WorkerProcess(env, tmp_path / "worker.log"))
    settings = Settings.from_env(env)
    report, [step] = check(settings)
    enqueue(make_celery(settings), step.task, *step.args)
    started = report.started["lenet"]
    wait_finished(tracker, started, tmp_path / "worker.log", timeout=900)
    [attempt] = tracker.attempt_runs(tracker.pipeline(started))
    assert attempt.data.params["resume_from"] == production.run_id
    assert attempt.data.tags[run_tags.CONTINUES] == production.run_id
    assert float(attempt.data.params["epochs"]) == 2  # production's 1, then 1 more
    assert epochs_logged(tracker, attempt.info.run_id) == [2]  # after production's
    assert attempt.data.tags["checkpoint.loaded_from"] == production.run_id
    new = DataVersion.from_tags(tracker.pipeline(started).tags)
    assert new is not None and new.digest != production.tags[run_tags.DATA_VERSION]
    assert attempt.data.tags[run_tags.DATA_VERSION] == new.digest  # trained on the new one
    assert attempt.data.tags[run_tags.REASON].startswith(
        "warm start: production v1's configuration and weights: "
    )
    history = tracker.attempts(tracker.pipeline(started))
    assert epochs_trained(history, load_project(project).space) == 1  # not production's
    # the gateway let it read production's checkpoint, and answered the logged-models
    # search download_artifacts makes beside it: nothing refused, no false alarm
    assert run_tags.REFUSED not in attempt.data.tags
    assert "refused" not in tracker.pipeline(started).tags[run_tags.REASON]
    assert attempt.data.tags[run_tags.EXECUTOR] == "docker"
