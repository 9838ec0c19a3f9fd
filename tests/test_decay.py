"""The decay watch (docs/data.md#the-decay-watch) and what it stands on: the decay rule
(a table), scoring a registered model on a data version through the project's
`evaluate` entry point, and MNIST version 2 (benchmarks/mnist_drift.py).

The slow test is the scenario itself, all real: LeNet trained by `ct-service run` on a
declared MNIST folder and promoted; its own data with one harmless file added (a new
version) scores what it was promoted with, so nothing starts; version 2 (a third
rotated, a third inverted) scores below the target, so one decay pipeline starts with
both numbers in its reason and in the e-mail (aiosmtpd), and the monitoring run holds
the series; the same version checked again starts, scores and sends nothing; then a
worker runs the decay pipeline, whose model replaces production, compared on version 2."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, ct_env

from ct_service import run_tags
from ct_service.decay import judge
from ct_service.target import Direction, Target

sys.path.insert(0, str(ROOT / "benchmarks"))
import mnist_drift  # noqa: E402

ACCURACY = Target("test_accuracy", 0.8)
LOSS = Target("test_loss", 0.3, Direction.MINIMIZE)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("target", "scored", "promoted", "decayed", "words"),
    [
        (ACCURACY, 0.95, 0.96, False, "holds: production lenet v3 scores test_accuracy 0.9500"),
        (
            ACCURACY,
            0.93,
            0.96,
            True,
            "0.0300 worse than it was promoted with, more than the tolerance 0.02",
        ),
        (
            ACCURACY,
            0.62,
            0.96,
            True,
            "scores test_accuracy 0.6200 on data abc (promoted with 0.9600): misses the target test_accuracy >= 0.8",
        ),
        (ACCURACY, 0.79, None, True, "(promoted score unknown): misses the target"),
        (ACCURACY, 0.90, None, False, "holds"),
        (ACCURACY, 0.97, 0.95, False, "holds"),  # better than promoted
        (ACCURACY, float("nan"), 0.95, True, "misses the target"),
        (LOSS, 0.25, 0.20, True, "0.0500 worse"),  # minimized: higher is worse
        (LOSS, 0.19, 0.20, False, "holds"),
        (LOSS, 0.31, 0.30, True, "misses the target test_loss <= 0.3"),
    ],
)
def test_the_decay_rule(target, scored, promoted, decayed, words) -> None:
    verdict = judge(target, scored, promoted, 0.02, "production lenet v3", "abc")
    assert verdict.decayed is decayed and words in verdict.reason
    assert verdict.reason.startswith("decay: " if decayed else "holds: ")


def small_mnist(folder: Path, count: int = 300) -> Path:
    """The first `count` images and labels of each MNIST set, as IDX files."""
    from conftest import MNIST

    folder.mkdir(parents=True)
    for images, labels in mnist_drift.SETS.items():
        for name in (images, labels):
            _, array = mnist_drift.read_idx(MNIST / f"{name}.gz")
            mnist_drift.write_idx(folder / f"{name}.gz", array[:count])
    return folder


@pytest.mark.unit
def test_mnist_version_2_is_deterministic_and_shifts_two_thirds(tmp_path: Path) -> None:
    source = small_mnist(tmp_path / "v1")
    first = mnist_drift.make_version_2(source, tmp_path / "a", seed=2)
    mnist_drift.make_version_2(source, tmp_path / "b", seed=2)
    mnist_drift.make_version_2(source, tmp_path / "c", seed=3)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in source.iterdir())  # version 1's file names
    for name in names:  # byte for byte the same from the same seed
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    images = "t10k-images-idx3-ubyte.gz"
    assert (tmp_path / "a" / images).read_bytes() != (tmp_path / "c" / images).read_bytes()
    assert [(s.images, s.rotated, s.inverted) for s in first] == [(300, 100, 100)] * 2
    for images_name, labels_name in mnist_drift.SETS.items():
        _, before = mnist_drift.read_idx(source / f"{images_name}.gz")
        _, after = mnist_drift.read_idx(tmp_path / "a" / f"{images_name}.gz")
        assert after.shape == before.shape and after.dtype == np.uint8
        labels = [
            mnist_drift.read_idx(f / f"{labels_name}.gz")[1] for f in (source, tmp_path / "a")
        ]
        assert (labels[0] == labels[1]).all()  # labels never change
        same = [(a == b).all() for a, b in zip(after, before, strict=True)]
        inverted = [(a == 255 - b).all() for a, b in zip(after, before, strict=True)]
        assert sum(same) == 100 and sum(inverted) == 100  # a third each, the rest rotated
        rotated = [i for i in range(300) if not same[i] and not inverted[i]]
        assert len(rotated) == 100
        for i in rotated:  # still a digit: ink kept (within the corners lost), not inverted
            assert 0.6 < after[i].sum() / before[i].sum() < 1.3
    with gzip.open(tmp_path / "a" / images) as raw:
        assert int.from_bytes(raw.read(4), "big") == mnist_drift.IMAGE_MAGIC


@pytest.mark.integration
def test_the_drift_script_says_what_it_did_and_refuses_a_bad_source(tmp_path: Path) -> None:
    script = [sys.executable, str(ROOT / "benchmarks" / "mnist_drift.py")]
    source = small_mnist(tmp_path / "v1", 30)
    done = subprocess.run(
        [*script, "--source", str(source), "--out", str(tmp_path / "v2"), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and '"rotated": 10' in done.stdout
    bad = subprocess.run(
        [*script, "--source", str(tmp_path), "--out", str(tmp_path / "v3")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "has neither train-images-idx3-ubyte" in bad.stderr


@pytest.mark.slow
def test_production_scored_on_shifted_data_decays_once_and_is_replaced(
    tmp_path: Path, mnist_dir: Path, smtp_server, redis_url: str, services: list
) -> None:
    from helpers import SMALL, lenet_declaring, run_to_production

    from ct_service.data_spec import DataSpec
    from ct_service.data_version import version_of
    from ct_service.orchestration.decay_watch import check, monitoring_run
    from ct_service.registry import PRODUCTION
    from ct_service.settings import DockerSettings, Settings, SmtpSettings
    from ct_service.tracking import Tracker

    roots = tmp_path / "data"
    current = roots / "mnist"
    current.mkdir(parents=True)
    for file in mnist_dir.glob("*-ubyte.gz"):
        shutil.copyfile(file, current / file.name)
    project = lenet_declaring(tmp_path, str(current))
    env = ct_env(CT_HOME=str(tmp_path / "ct"), CT_MAX_ATTEMPTS="1", CT_DATA_DIRS=str(roots),
                 CT_TARGET_THRESHOLD="0.5")  # fmt: skip
    run_to_production(env, project, {**SMALL, "epochs": "1"})
    port, mailbox = smtp_server
    settings = Settings(
        home=tmp_path / "ct",
        target=Target("test_accuracy", 0.5),
        docker=DockerSettings(data_dirs=(str(roots),)),
        smtp=SmtpSettings(host="127.0.0.1", port=port, recipients=("ml@example.com",)),
    )
    tracker = Tracker(settings)
    production = tracker.client.get_model_version_by_alias("lenet", PRODUCTION)
    promoted = float(production.tags["ct.metric.test_accuracy"])
    v1 = version_of(settings, DataSpec("data", str(current)))
    assert production.tags[run_tags.DATA_VERSION] == v1.digest

    # A new version (one harmless file more) on which production scores as promoted.
    (current / "README.txt").write_text("MNIST, as LeNet reads it\n")
    report, steps = check(settings)
    assert not steps and not report.errors and "lenet" in report.holding, report
    [held] = scores(tracker)
    assert abs(held.data.metrics["test_accuracy"] - promoted) < 1e-4  # the same test set
    assert held.data.tags[run_tags.SCORE_METHOD] == "evaluate entry point"

    # Version 2: a third of the digits rotated, a third inverted.
    mnist_drift.make_version_2(mnist_dir, current)
    v2 = version_of(settings, DataSpec("data", str(current)))
    report, steps_started = check(settings)
    assert list(report.started) == ["lenet"] and len(steps_started) == 1, report
    on_v2 = next(r for r in scores(tracker) if r.data.tags[run_tags.DATA_VERSION] == v2.digest)
    scored = on_v2.data.metrics["test_accuracy"]
    print(f"production on v1 {promoted:.4f}, on v2 {scored:.4f}")
    assert scored < 0.5 < promoted
    started = tracker.pipeline(report.started["lenet"])
    reason = started.tags[run_tags.TRIGGER_REASON]
    assert started.tags[run_tags.TRIGGER] == "decay" and reason.startswith("decay: ")
    assert f"{scored:.4f}" in reason and f"{promoted:.4f}" in reason and v2.short in reason
    assert started.tags[run_tags.DATA_VERSION] == v2.digest  # it trains on version 2
    [mail] = mailbox.messages
    body = mail.get_content()
    assert "decayed" in mail["Subject"] and f"{scored:.4f}" in body and f"{promoted:.4f}" in body
    monitor = monitoring_run(tracker, tracker.pipeline(production.tags[run_tags.PIPELINE_ID]))
    series = tracker.client.get_metric_history(monitor, "test_accuracy")
    assert [(m.step, round(m.value, 4)) for m in series] == [
        (1, round(held.data.metrics["test_accuracy"], 4)),
        (2, round(scored, 4)),
    ]
    metrics = tracker.client.get_run(monitor).data.metrics
    assert metrics[f"test_accuracy/data/{v2.short}"] == scored

    # The same version again: nothing scored, started or sent.
    again, steps = check(settings)
    assert not steps and again.known == {"lenet": started.id} and not again.notified
    assert len(scores(tracker)) == 2 and len(mailbox.messages) == 1
    assert len(tracker.client.get_metric_history(monitor, "test_accuracy")) == 2

    # The decay pipeline, run by a real worker: retrained on version 2, it beats
    # production there (production's score on version 2 is the decay watch's own run)
    # and replaces it, both numbers on the new version.
    from conftest import WorkerProcess
    from helpers import wait_finished

    from ct_service.champion import Basis, ChampionScore
    from ct_service.orchestration.queue import enqueue, make_celery

    env["CT_BROKER_URL"] = redis_url
    services.append(WorkerProcess(env, tmp_path / "worker.log"))
    [step] = steps_started
    enqueue(make_celery(Settings.from_env(env)), step.task, *step.args)
    wait_finished(tracker, started.id, tmp_path / "worker.log", timeout=900)
    assert tracker.pipeline(started.id).outcome == "promoted", tracker.pipeline(started.id).reason
    winner = tracker.client.get_model_version_by_alias("lenet", PRODUCTION)
    assert winner.tags[run_tags.DATA_VERSION] == v2.digest
    compared = ChampionScore.from_json(winner.tags[run_tags.COMPARISON])
    assert compared is not None and compared.basis is Basis.RESCORED
    assert compared.run_id == on_v2.info.run_id and compared.value == pytest.approx(scored)
    assert scored < float(winner.tags["ct.metric.test_accuracy"])
    assert (
        f"{scored:.4g}" in winner.tags[run_tags.DECISION]
        and v2.short in winner.tags[run_tags.DECISION]
    )


def scores(tracker) -> list:
    experiment = tracker.client.get_experiment_by_name("ct/lenet").experiment_id
    return tracker.client.search_runs([experiment], "tags.`ct.kind` = 'score'")


@pytest.mark.integration
def test_a_project_without_evaluate_is_scored_by_mlflow_models_evaluate(tmp_path: Path) -> None:
    """digits without its `evaluate` entry point, ct.yaml `scoring:` naming a CSV: the
    registered model is scored by mlflow.models.evaluate (its accuracy_score is the
    target's test_accuracy); a table without the label column and a pushed project's
    model are not scored, each saying why."""
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    from sklearn.metrics import accuracy_score

    from ct_service.data_spec import DataSpec
    from ct_service.data_version import version_of
    from ct_service.exceptions import DataError
    from ct_service.orchestration import pipeline
    from ct_service.orchestration.scoring import score
    from ct_service.registry import register
    from ct_service.settings import DockerSettings, Settings
    from ct_service.tracking import Tracker

    project = tmp_path / "digits"
    shutil.copytree(
        ROOT / "projects" / "digits", project, ignore=shutil.ignore_patterns("__pycache__")
    )
    mlproject = (project / "MLproject").read_text()
    (project / "MLproject").write_text(mlproject[: mlproject.index("  # Score a model")])
    (project / "ct.yaml").write_text("scoring: {file: test.csv, targets: label}\n")
    roots = tmp_path / "data"
    settings = Settings(home=tmp_path / "ct", env_manager="local",
                        docker=DockerSettings(data_dirs=(str(roots),)))  # fmt: skip
    pipeline_id = pipeline.create(settings, str(project))
    tracker = Tracker(settings)
    sys.path.insert(0, str(project))
    try:
        from train import fit, split
    finally:
        sys.path.remove(str(project))
    train_x, test_x, train_y, test_y = split()
    model = fit(train_x, train_y, 8, 0.05, 2, 0)
    experiment = tracker.pipeline(pipeline_id).experiment_id
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle")
    version = register(
        tracker.client, "digits", run.info.run_id, {run_tags.PIPELINE_ID: pipeline_id}
    )
    table = pd.DataFrame(test_x, columns=[f"pixel_{i}" for i in range(64)])
    table["label"] = test_y
    (roots / "good").mkdir(parents=True)
    table.to_csv(roots / "good" / "test.csv", index=False)
    good = version_of(settings, DataSpec("data", str(roots / "good")))
    found = score(settings, tracker, "digits", version, good)
    assert found.method == "mlflow.models.evaluate" and not found.failure
    assert found.value == pytest.approx(accuracy_score(test_y, model.predict(test_x)))
    run_metrics = tracker.client.get_run(found.run_id).data.metrics
    assert run_metrics["test_accuracy"] == run_metrics["accuracy_score"] == found.value
    assert score(settings, tracker, "digits", version, good).run_id == found.run_id  # scored once

    # a folder is read in place: one that moved on since its version was read is not
    # scored under that version (no run recorded for it)
    (roots / "moving").mkdir()
    table.iloc[1:].to_csv(roots / "moving" / "test.csv", index=False)  # not good's data
    moving = version_of(settings, DataSpec("data", str(roots / "moving")))
    table.iloc[::2].to_csv(roots / "moving" / "test.csv", index=False)
    with pytest.raises(DataError, match=f"holds version .* now, not {moving.short}"):
        score(settings, tracker, "digits", version, moving)
    assert not tracker.client.search_runs(
        [experiment], f"tags.`{run_tags.DATA_VERSION}` = '{moving.digest}'"
    )

    (roots / "bad").mkdir()
    table.drop(columns=["label"]).to_csv(roots / "bad" / "test.csv", index=False)
    bad = score(settings, tracker, "digits", version,
                version_of(settings, DataSpec("data", str(roots / "bad"))))  # fmt: skip
    assert bad.value is None and "has no column label (ct.yaml scoring.targets)" in bad.failure
    assert tracker.client.get_run(bad.run_id).data.tags[run_tags.STATUS] == "failed"

    tracker.set_tags(pipeline_id, {run_tags.SOURCE_REPOSITORY: "github:acme/digits"})
    (roots / "other").mkdir()
    table.iloc[::-1].to_csv(roots / "other" / "test.csv", index=False)  # another version
    pushed = score(settings, tracker, "digits", version,
                   version_of(settings, DataSpec("data", str(roots / "other"))))  # fmt: skip
    assert pushed.value is None and "loaded only in a container" in pushed.failure


@pytest.mark.unit
@pytest.mark.parametrize(
    ("value", "entry", "error"),
    [
        ("", 3600.0, ""),
        ("600", 600.0, ""),
        ("0", None, ""),
        ("0 4 * * *", "<crontab: 0 4 * * * (m/h/dM/MY/d)>", ""),
        ("soon", None, "CT_DECAY_SCHEDULE must be seconds"),
        ("-5", None, "CT_DECAY_SCHEDULE must be seconds"),
        ("61 4 * * *", None, "CT_DECAY_SCHEDULE: "),
    ],
)
def test_the_decay_schedule_setting_makes_one_beat_entry(value, entry, error) -> None:
    from ct_service.exceptions import SettingsError
    from ct_service.orchestration.queue import make_celery
    from ct_service.settings import Settings

    environ = {"CT_DECAY_SCHEDULE": value} if value else {}
    if error:
        with pytest.raises(SettingsError, match=error):
            make_celery(Settings.from_env(environ))
        return
    schedule = make_celery(Settings.from_env(environ)).conf.beat_schedule
    if entry is None:
        assert "ct-decay-watch" not in schedule
        return
    found = schedule["ct-decay-watch"]
    assert found["task"] == "ct.decay.check" and found["options"]["queue"] == "training"
    assert (found["schedule"] if isinstance(entry, float) else repr(found["schedule"])) == entry


@pytest.mark.integration
def test_a_model_folder_built_before_it_was_made_readable_is_made_readable(
    tmp_path: Path,
) -> None:
    """A version's model files cached by an earlier release (a 0700 folder, which an
    evaluate container's user cannot read) are made readable by all when reused."""
    from ct_service.orchestration.scoring import model_files
    from ct_service.settings import Settings

    settings = Settings(home=tmp_path / "ct")
    folder = tmp_path / "ct" / "scoring" / "models" / "lenet" / "3"
    (folder / "data").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    folder.chmod(0o700)
    assert model_files(settings, "lenet", "3") == folder.resolve()
    assert folder.stat().st_mode & 0o777 == 0o555
    assert (folder / "MLmodel").stat().st_mode & 0o777 == 0o444
    assert (folder / "data").stat().st_mode & 0o777 == 0o555
    folder.chmod(0o755)  # so that pytest can remove it
    (folder / "data").chmod(0o755)
