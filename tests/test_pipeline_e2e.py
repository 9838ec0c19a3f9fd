"""The whole loop over real parts: Redis broker, a `ct-service worker` process,
MLflow on SQLite, TensorFlow on MNIST, and a local SMTP server.

The pipeline starts from a deliberately weak configuration (one epoch of a tiny
network on 3,000 images), so attempt 1 misses 80% and the policy must change it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import LENET, ROOT, WorkerProcess, ct_env
from helpers import enqueue, epochs_logged

pytestmark = pytest.mark.e2e

WEAK = {
    "conv_blocks": "1",
    "filters": "4",
    "dense_units": "16",
    "epochs": "1",
    "batch_size": "64",
    "learning_rate": "0.001",
    "max_train_samples": "3000",
}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, mnist_dir):
    """Run one pipeline to its end through Redis and a worker process."""
    import redis
    from aiosmtpd.controller import Controller
    from conftest import REDIS_URL, Mailbox, free_port

    from ct_service.settings import Settings
    from ct_service.tracking import PipelineStatus, Tracker

    home = tmp_path_factory.mktemp("e2e") / "ct"
    redis.Redis.from_url(REDIS_URL).flushdb()
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    env = ct_env(
        CT_HOME=str(home),
        CT_BROKER_URL=REDIS_URL,
        CT_SMTP_HOST="127.0.0.1",
        CT_SMTP_PORT=str(smtp.port),
        CT_MAIL_TO="ml-team@example.com",
        CT_MAX_ATTEMPTS="5",
    )
    worker = WorkerProcess(env, home.parent / "worker.log")
    try:
        params = [
            arg for k, v in {**WEAK, "data": str(mnist_dir)}.items() for arg in ("-P", f"{k}={v}")
        ]
        pipeline_id = enqueue(env, LENET, *params, "--commit", COMMIT)
        settings = Settings(home=home)
        tracker = Tracker(settings)
        deadline = time.monotonic() + 1200
        while tracker.pipeline(pipeline_id).status is not PipelineStatus.FINISHED:
            assert time.monotonic() < deadline, worker.log_path.read_text()[-5000:]
            time.sleep(2)
        yield {
            "id": pipeline_id,
            "settings": settings,
            "tracker": tracker,
            "mailbox": mailbox,
            "worker": worker,
            "env": env,
            "mnist": mnist_dir,
        }
    finally:
        worker.stop()
        smtp.stop()
        redis.Redis.from_url(REDIS_URL).flushdb()


@pytest.mark.slow
def test_a_weak_start_misses_the_policy_adapts_and_a_later_attempt_is_promoted(finished):
    tracker, pipeline_id = finished["tracker"], finished["id"]
    pipeline = tracker.pipeline(pipeline_id)
    attempts = tracker.attempts(pipeline)
    assert pipeline.outcome == "promoted", pipeline.reason
    assert pipeline.tags["ct.commit"] == COMMIT
    assert pipeline.tags["ct.target"] == "test_accuracy >= 0.8"
    assert tracker.client.get_run(pipeline_id).info.status == "FINISHED"

    first, last = attempts[0], attempts[-1]
    assert first.metric is not None and first.metric < 0.8
    assert first.reason == "initial configuration"
    assert last.metric is not None and last.metric >= 0.8
    assert all(a.metric is not None and a.metric < 0.8 for a in attempts[:-1])
    assert 2 <= len(attempts) <= 5
    for before, after in zip(attempts, attempts[1:], strict=False):
        assert after.config != before.config  # the policy changed something
        assert "->" in after.reason  # and says what, and why
        run = tracker.client.get_run(after.run_id)
        assert run.data.tags["mlflow.parentRunId"] == pipeline_id
        assert run.data.tags["ct.derived_from"]
    assert len({json.dumps(a.config, sort_keys=True) for a in attempts}) == len(attempts)
    # The weak start only needs more epochs: a later attempt continues an earlier one
    # from its last checkpoint; no epoch is trained twice, and its history carries on.
    continued = [a for a in attempts if "continuing attempt" in a.reason]
    assert continued, [a.reason for a in attempts]
    for attempt in continued:
        base_id = tracker.client.get_run(attempt.run_id).data.tags["ct.continues"]
        base = next(a for a in attempts if a.run_id == base_id)
        trained = attempt.checkpoint_epoch  # its last epoch: it may have been stopped early
        assert epochs_logged(tracker, attempt.run_id) == list(
            range(base.checkpoint_epoch + 1, trained + 1)
        )
        assert len(attempt.curves["val_accuracy"]) == trained  # the base's epochs, then its own
    # The winner was stopped as soon as its validation curve cleared the target (the
    # policy gives a continuation the most epochs the space allows), then evaluated.
    assert last.stopped_as("target met"), last.stopped_early
    # The judge named the epoch whose value cleared the target by the margin, and the
    # run stopped after it (the request lands a poll or two later: with sub-second
    # epochs, that may be the last epoch).
    judged = re.search(
        r"val_accuracy ([0-9.]+) at epoch (\d+) meets the target", last.stopped_early
    )
    assert judged, last.stopped_early
    value, epoch = float(judged.group(1)), int(judged.group(2))
    assert epoch <= last.checkpoint_epoch <= int(last.config["epochs"])
    # by the interval its watch recorded, sized by the validation set LeNet logged
    interval = json.loads(tracker.client.get_run(last.run_id).data.tags["ct.stop_interval"])
    assert interval["source"].startswith("binomial error of")
    assert f"meets the target: margin {interval['margin']:.3g}" in judged.string
    judged_pair = last.validation[max(0, epoch - 2) : epoch]  # the mean of two epochs cleared it
    assert value == pytest.approx(judged_pair[-1], abs=5e-4)
    assert sum(judged_pair) / len(judged_pair) >= 0.8 + interval["margin"] - 1e-9
    assert epochs_logged(tracker, last.run_id)[-1] == last.checkpoint_epoch


@pytest.mark.slow
def test_the_promoted_model_is_production_by_alias_and_stage_and_scores_on_mnist(finished):
    import mlflow

    sys.path.insert(0, str(LENET))
    import mnist

    tracker, pipeline_id = finished["tracker"], finished["id"]
    client = tracker.client
    pipeline = tracker.pipeline(pipeline_id)
    winner = tracker.attempts(pipeline)[-1]
    by_alias = client.get_model_version_by_alias("lenet", "production")
    assert by_alias.run_id == winner.run_id
    assert str(by_alias.version) == pipeline.tags["ct.model_version"]
    assert by_alias.current_stage == "Production"
    assert by_alias.tags["ct.pipeline_id"] == pipeline_id
    assert by_alias.tags["ct.commit"] == COMMIT
    assert float(by_alias.tags["ct.metric.test_accuracy"]) == pytest.approx(winner.metric, abs=1e-5)
    # Lineage from the registry alone: the data it trained on, where it ran.
    inputs = client.get_run(winner.run_id).inputs.dataset_inputs
    assert inputs and all(
        by_alias.tags[f"ct.data.{i.dataset.name}"] == i.dataset.digest for i in inputs
    )
    assert by_alias.tags["ct.executor"] == "local"
    # The attempt run carries the source tags MLflow sets on its own project runs.
    attempt_tags = client.get_run(winner.run_id).data.tags
    assert attempt_tags["mlflow.source.type"] == "PROJECT"
    assert attempt_tags["mlflow.source.git.commit"] == COMMIT
    assert attempt_tags["mlflow.source.name"] == pipeline.spec.project_path
    assert len(client.search_model_versions("name = 'lenet'")) == 1

    mlflow.set_tracking_uri(finished["settings"].tracking_uri)
    data = mnist.load(str(finished["mnist"]))
    images = data.x_test.astype("float32")[..., None] / 255.0
    for uri in ("models:/lenet@production", "models:/lenet/Production"):
        model = mlflow.pyfunc.load_model(uri)
        predicted = np.asarray(model.predict(images)).argmax(axis=1)
        accuracy = float((predicted == data.y_test).mean())
        assert accuracy >= 0.8, (uri, accuracy)


@pytest.mark.slow
def test_exactly_one_notification_lists_the_attempts(finished):
    tracker, pipeline_id = finished["tracker"], finished["id"]
    attempts = tracker.attempts(tracker.pipeline(pipeline_id))
    [message] = finished["mailbox"].messages
    body = message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
    assert message["To"] == "ml-team@example.com"
    assert pipeline_id[:8] in message["Subject"] and "promoted" in message["Subject"]
    for attempt in attempts:
        assert re.search(rf"^{attempt.number}\s+finished\s+{attempt.metric:.4f}", body, re.M), body
    assert f"#/experiments/{tracker.pipeline(pipeline_id).experiment_id}/runs/{pipeline_id}" in body
    assert tracker.pipeline(pipeline_id).tags["ct.notify.email"] == "sent"


@pytest.mark.slow
def test_the_search_picture_is_logged_and_shown_inline_in_the_email(finished, tmp_path):
    import io

    from matplotlib import image

    tracker, pipeline_id = finished["tracker"], finished["id"]
    stored = tracker.client.download_artifacts(pipeline_id, "search.png", str(tmp_path))
    picture = open(stored, "rb").read()
    assert image.imread(io.BytesIO(picture), format="png").shape[:2] == (600, 1000)
    [message] = finished["mailbox"].messages
    html = message.get_body(preferencelist=("html",)).get_content()
    [inline] = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert f'src="cid:{inline["Content-ID"][1:-1]}"' in html
    assert inline.get_content() == picture
    plain = message.get_body(preferencelist=("plain",)).get_content()
    assert f"get-artifact?path=search.png&run_uuid={pipeline_id}" in plain  # what chats link


@pytest.mark.slow
def test_status_shows_the_pipeline(finished):
    result = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "status", finished["id"], "--json"],
        env=finished["env"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["outcome"] == "promoted"
    assert [a["number"] for a in status["attempts"]] == list(range(1, len(status["attempts"]) + 1))


@pytest.mark.slow
def test_replayed_messages_create_no_attempt_version_or_mail(finished):
    from ct_service.orchestration.pipeline import Task
    from ct_service.orchestration.queue import enqueue, make_celery

    tracker, pipeline_id, worker = finished["tracker"], finished["id"], finished["worker"]
    pipeline = tracker.pipeline(pipeline_id)
    attempts = tracker.attempts(pipeline)
    mails = len(finished["mailbox"].messages)
    done_before = worker.log_path.read_text().count("succeeded in")

    app = make_celery(finished["settings"].__class__.from_env(finished["env"]))
    enqueue(app, Task.START, pipeline_id)
    for attempt in attempts:
        enqueue(app, Task.RUN_ATTEMPT, pipeline_id, attempt.run_id)
        enqueue(app, Task.DECIDE, pipeline_id, attempt.run_id)
    enqueue(app, Task.PROMOTE, pipeline_id)
    enqueue(app, Task.NOTIFY, pipeline_id)
    expected = 3 + 2 * len(attempts)
    deadline = time.monotonic() + 120
    while worker.log_path.read_text().count("succeeded in") < done_before + expected:
        assert time.monotonic() < deadline, worker.log_path.read_text()[-3000:]
        time.sleep(0.5)

    assert [a.run_id for a in tracker.attempts(pipeline)] == [a.run_id for a in attempts]
    assert len(tracker.client.search_model_versions("name = 'lenet'")) == 1
    assert len(finished["mailbox"].messages) == mails
    assert tracker.pipeline(pipeline_id).status.value == "finished"
