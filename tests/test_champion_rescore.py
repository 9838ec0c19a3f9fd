"""Champion and challenger on the same data (docs/decisions.md#champion-and-challenger-on-the-same-data):
before a winner is compared with production, production is re-scored on the winner's
data version through its project's `evaluate` entry point, and the decision (the
version's ct.decision, the history, the pipeline's reason, the e-mail) carries both
numbers, the data version and how production's number was obtained.

The unit tests are tables of the decision text. The slow test is all real: digits
(scikit-learn, seconds to train) declaring a data folder, trained by `ct-service run`
(embedded: its Celery worker in the process, MLflow on SQLite, the scoring step on the
training queue), the folder rewritten between pipelines:

1. data N (clean training set, 40% of the test labels wrong): a strong model, stored
   test_accuracy ~0.57, promoted (v1);
2. data C (clean): a weak winner (~0.68) beats v1's *stored* 0.57, but v1 re-scored on
   C scores ~0.96: kept, both numbers recorded;
3. data F (the images mirrored): a weak winner (~0.54) is below v1's stored 0.57, but
   v1 re-scored on F scores ~0.32: promoted (v3), both numbers in the decision and in
   the e-mail (aiosmtpd);
4. the project's evaluate breaks, data F plus one file: v3 cannot be scored, so the
   stored metric is used and the decision says why."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pytest
from conftest import ROOT, ct_env

from ct_service import run_tags
from ct_service.champion import Basis, ChampionScore, decision

DIGEST = "ab12cd34ef56" + "0" * 52


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [1] * len(model_input)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("outcome", "champion", "expected"),
    [
        (
            "promoted",
            ChampionScore.rescored(
                "3", "test_accuracy", 0.3156, 0.5711, DIGEST, "evaluate entry point", "r1"
            ),  # fmt: skip
            "version 4 promoted with test_accuracy 0.54 against production v3's 0.3156 "
            "(replacing version 3); both on data version ab12cd34ef56: production v3 "
            "re-scored by evaluate entry point, its stored test_accuracy 0.5711",
        ),
        (
            "kept",
            ChampionScore.rescored(
                "3", "test_accuracy", 0.9556, 0.5711, DIGEST, "mlflow.models.evaluate", "r1"
            ),  # fmt: skip
            "kept version 3 in production: its test_accuracy 0.9556 is not worse than the "
            "candidate's 0.54; both on data version ab12cd34ef56: production v3 re-scored "
            "by mlflow.models.evaluate, its stored test_accuracy 0.5711",
        ),
        (
            "kept",
            ChampionScore.from_stored(
                "3", "test_accuracy", 0.98, "the evaluate run failed:\n exit code 1", DIGEST
            ),  # fmt: skip
            "kept version 3 in production: its test_accuracy 0.98 is not worse than the "
            "candidate's 0.54; production v3 could not be scored on ab12cd34ef56: the "
            "evaluate run failed: exit code 1; compared with its stored test_accuracy 0.98",
        ),
        (
            "promoted",
            ChampionScore.from_stored(
                "3", "test_accuracy", 0.5, "the candidate records no data version"
            ),  # fmt: skip
            "version 4 promoted with test_accuracy 0.54 against production v3's 0.5 "
            "(replacing version 3); production v3 not re-scored (the candidate records no "
            "data version); compared with its stored test_accuracy 0.5",
        ),
        (
            "proposed",
            ChampionScore.from_stored(
                "3", "test_accuracy", None, "production v3 trained on no declared data"
            ),  # fmt: skip
            "version 4 awaits approval as @candidate: test_accuracy 0.54 against "
            "production's n/a (version 3); production v3 not re-scored (production v3 "
            "trained on no declared data); compared with its stored test_accuracy n/a",
        ),
        (
            "promoted",
            None,
            "version 4 promoted with test_accuracy 0.54",
        ),
        (
            "proposed",
            None,
            "version 4 awaits approval as @candidate: test_accuracy 0.54 against no "
            "version in production",
        ),
    ],
)
def test_the_decision_names_both_numbers_the_data_and_how_production_was_scored(
    outcome: str, champion: ChampionScore | None, expected: str
) -> None:
    text = decision(outcome, "4", "test_accuracy", 0.54, champion)
    assert text == expected and "\n" not in text


@pytest.mark.unit
def test_a_champion_score_survives_its_tag_and_a_bad_tag_is_none() -> None:
    score = ChampionScore.rescored("3", "test_loss", 0.25, None, DIGEST, "evaluate entry point",
                                   "r1")  # fmt: skip
    assert ChampionScore.from_json(score.to_json()) == score
    assert score.basis is Basis.RESCORED and score.data_short == "ab12cd34ef56"
    for bad in ("", "none", "{}", '{"basis": "guessed"}', "[1]"):
        assert ChampionScore.from_json(bad) is None


@pytest.mark.integration
def test_production_is_compared_by_its_stored_metric_when_it_cannot_be_re_scored(
    tmp_path: Path,
) -> None:
    """On a real SQLite store, without training (a small pyfunc model): each reason
    production is not re-scored is named, and its stored metric is what is compared;
    a promote step that finds no recorded score (a message from before the scoring
    step) sends the scoring step first."""
    from ct_service.orchestration import champion_scoring, pipeline
    from ct_service.orchestration.pipeline import Step, Task
    from ct_service.registry import PRODUCTION
    from ct_service.settings import DockerSettings, Settings
    from ct_service.tracking import Tracker

    roots = tmp_path / "data"
    current = roots / "digits"
    current.mkdir(parents=True)
    (current / "test.csv").write_text("label\n1\n")
    project = tmp_path / "digits"
    shutil.copytree(
        ROOT / "projects" / "digits", project, ignore=shutil.ignore_patterns("__pycache__")
    )
    (project / "ct.yaml").write_text(f"data: {{param: data, source: '{current}'}}\n")
    settings = Settings(home=tmp_path / "ct", docker=DockerSettings(data_dirs=(str(roots),)))
    tracker = Tracker(settings)
    first = pipeline.create(settings, str(project))
    pinned = tracker.pipeline(first).tags
    data_tags = {k: v for k, v in pinned.items() if k.startswith("ct.data_")}
    experiment = tracker.pipeline(first).experiment_id
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    with mlflow.start_run(experiment_id=experiment) as trained:
        mlflow.log_metric("test_accuracy", 0.9)
        mlflow.pyfunc.log_model(name="model", python_model=Constant())
    client = tracker.client
    client.create_registered_model("digits")
    champion = client.create_model_version(
        "digits", f"runs:/{trained.info.run_id}/model", trained.info.run_id,
        tags={run_tags.PIPELINE_ID: "no-such-pipeline", **data_tags},
    )  # fmt: skip
    client.set_registered_model_alias("digits", PRODUCTION, champion.version)
    second = pipeline.create(settings, str(project))
    winner = client.create_run(experiment, tags={**data_tags}).info.run_id
    tracker.set_tags(second, {run_tags.CANDIDATE: winner, run_tags.STATUS: "promoting"})

    def why() -> str:
        found = champion_scoring.champion_score(settings, tracker, tracker.pipeline(second))
        assert found is not None and found.value == found.stored == 0.9
        return found.basis_text()

    # its pipeline is gone: scoring says so
    assert why().startswith(
        f"production v1 could not be scored on {pinned[run_tags.DATA_VERSION][:12]}: no pipeline"
    )
    (current / "test.csv").write_text("label\n2\n")  # the folder moved on
    assert "holds version" in why() and "no longer the candidate's" in why()
    client.delete_model_version_tag("digits", "1", run_tags.DATA_VERSION)
    assert why() == (
        "production v1 not re-scored (production v1 trained on no declared data); "
        "compared with its stored test_accuracy 0.9"
    )
    tracker.set_tags(second, {run_tags.CANDIDATE: client.create_run(experiment).info.run_id})
    assert "(the candidate records no data version)" in why()
    assert pipeline.promote(settings, second) == Step(Task.SCORE_CHAMPION, (second,))
    assert pipeline.score_champion(settings, second) == Step(Task.PROMOTE, (second,))
    assert champion_scoring.is_recorded(tracker.pipeline(second))


def write_version(folder: Path, train: tuple, test: tuple) -> None:
    """A data version of digits: train.csv and test.csv (64 pixels and `label`)."""
    import pandas as pd

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, (features, labels) in (("train.csv", train), ("test.csv", test)):
        table = pd.DataFrame(features, columns=[f"pixel_{i}" for i in range(64)])
        table["label"] = labels
        table.to_csv(folder / name, index=False)


def mirrored(features: np.ndarray) -> np.ndarray:
    return features.reshape(-1, 8, 8)[:, :, ::-1].reshape(-1, 64)


@pytest.mark.slow
def test_production_is_compared_on_the_candidates_data(tmp_path: Path, smtp_server) -> None:
    sys.path.insert(0, str(ROOT / "projects" / "digits"))
    try:
        from train import split
    finally:
        sys.path.remove(str(ROOT / "projects" / "digits"))
    from ct_service.data_spec import DataSpec
    from ct_service.data_version import version_of
    from ct_service.history import Move, read
    from ct_service.registry import PRODUCTION
    from ct_service.settings import DockerSettings, Settings
    from ct_service.tracking import Tracker

    train_x, test_x, train_y, test_y = split()
    rng = np.random.default_rng(0)
    noisy = test_y.copy()
    wrong = rng.choice(len(noisy), int(0.4 * len(noisy)), replace=False)
    noisy[wrong] = (noisy[wrong] + 1 + rng.integers(0, 9, len(wrong))) % 10  # never right
    roots = tmp_path / "data"
    current = roots / "digits"
    project = tmp_path / "digits"
    shutil.copytree(
        ROOT / "projects" / "digits", project, ignore=shutil.ignore_patterns("__pycache__")
    )
    (project / "ct.yaml").write_text(f"data: {{param: data, source: '{current}'}}\n")
    port, mailbox = smtp_server
    env = ct_env(
        CT_HOME=str(tmp_path / "ct"), CT_MAX_ATTEMPTS="1", CT_DATA_DIRS=str(roots),
        CT_TARGET_THRESHOLD="0.1", CT_ENV_MANAGER="local", CT_EXECUTION="local",
        CT_SMTP_HOST="127.0.0.1", CT_SMTP_PORT=str(port), CT_MAIL_TO="ml@example.com",
    )  # fmt: skip
    settings = Settings(home=tmp_path / "ct", docker=DockerSettings(data_dirs=(str(roots),)))
    tracker = Tracker(settings)

    def train(**params: object) -> str:
        """`ct-service run` of the project on the folder's current version; its pipeline."""
        given = [a for k, v in params.items() for a in ("-P", f"{k}={v}")]
        done = subprocess.run(
            [sys.executable, "-m", "ct_service.cli", "run", str(project), *given, "--json"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return tracker.recent_pipelines()[0].id

    def decided(version: str) -> tuple[str, float]:
        model = tracker.client.get_model_version("digits", version)
        return model.tags[run_tags.DECISION], float(model.tags["ct.metric.test_accuracy"])

    def scored(version: str, digest: str) -> float:
        experiment = tracker.client.get_experiment_by_name("ct/digits").experiment_id
        [run] = tracker.client.search_runs(
            [experiment],
            f"tags.`ct.kind` = 'score' and tags.`{run_tags.SCORED_VERSION}` = '{version}' "
            f"and tags.`{run_tags.DATA_VERSION}` = '{digest}'",
        )
        assert run.data.tags[run_tags.SCORE_METHOD] == "evaluate entry point"
        return run.data.metrics["test_accuracy"]

    # 1. The champion, on a test set with wrong labels: a low stored metric.
    write_version(current, (train_x, train_y), (test_x, noisy))
    first = train(n_estimators=40, learning_rate=0.1, max_depth=3)
    assert tracker.pipeline(first).tags[run_tags.CHAMPION_SCORE] == "none"  # nothing to beat
    stored = float(tracker.client.get_model_version("digits", "1").tags["ct.metric.test_accuracy"])

    # 2. Clean data: the winner beats v1's stored metric, not v1 re-scored on it: kept.
    write_version(current, (train_x, train_y), (test_x, test_y))
    clean = version_of(settings, DataSpec("data", str(current)))
    train(n_estimators=4, learning_rate=0.1, max_depth=1)
    kept, winner = decided("2")
    on_clean = scored("1", clean.digest)
    print(f"v1 stored {stored:.4f}, on clean {on_clean:.4f}; winner {winner:.4f}")
    assert stored < winner < on_clean  # the stored metric would have promoted it
    assert kept.startswith("kept version 1 in production")
    for number in (on_clean, winner, stored):
        assert f"{number:.4g}" in kept
    assert f"both on data version {clean.short}" in kept and "evaluate entry point" in kept
    assert str(tracker.client.get_model_version_by_alias("digits", PRODUCTION).version) == "1"

    # 3. Mirrored images: the winner is below v1's stored metric, above v1 on them: promoted.
    write_version(current, (mirrored(train_x), train_y), (mirrored(test_x), test_y))
    flipped = version_of(settings, DataSpec("data", str(current)))
    third = train(n_estimators=2, learning_rate=0.05, max_depth=1)
    promoted, winner = decided("3")
    on_flipped = scored("1", flipped.digest)
    print(f"v1 stored {stored:.4f}, on mirrored {on_flipped:.4f}; winner {winner:.4f}")
    assert on_flipped < winner < stored  # the stored metric would have kept v1
    assert promoted.startswith("version 3 promoted with test_accuracy")
    for number in (winner, on_flipped, stored):
        assert f"{number:.4g}" in promoted
    assert f"both on data version {flipped.short}" in promoted
    assert str(tracker.client.get_model_version_by_alias("digits", PRODUCTION).version) == "3"
    [event] = [e for e in read(tracker.client, "digits").events if e.cause.pipeline_id == third]
    assert event.move is Move.PROMOTED and event.production_score == pytest.approx(on_flipped)
    assert event.data_version == flipped.digest and event.reason == promoted
    assert promoted in tracker.pipeline(third).reason
    mail = mailbox.messages[-1].get_content()
    assert f"{winner:.4g}" in mail and f"{on_flipped:.4g}" in mail and flipped.short in mail

    # 4. The champion cannot be scored (its evaluate fails): its stored metric, and why.
    (project / "evaluate.py").write_text(
        'raise SystemExit("error: this model\'s flavour cannot be loaded")\n'
    )
    (current / "README.txt").write_text("digits, mirrored\n")  # a new version
    newest = version_of(settings, DataSpec("data", str(current)))
    train(n_estimators=2, learning_rate=0.05, max_depth=1)
    fallback, _ = decided("4")
    print(kept, promoted, fallback, sep="\n")
    assert fallback.startswith("kept version 3 in production")
    assert (
        f"production v3 could not be scored on {newest.short}: the evaluate run failed" in fallback
    )
    assert fallback.endswith(f"compared with its stored test_accuracy {winner:.4g}")
