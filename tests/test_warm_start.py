"""Warm start from production (docs/data.md): the first attempt of a pipeline that
retrains production on new data takes production's configuration, and with ct.yaml
`data_trigger: {start: weights}` continues production's checkpoint where the project
can, else says why it starts from scratch; the epoch budget charges only the epochs
trained. Pure functions and the ct.yaml reader: tables of cases."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ct_service.attempt import Attempt, AttemptStatus
from ct_service.exceptions import ProjectError
from ct_service.project import load_project
from ct_service.search import Action, Decision, epochs_trained, within_epoch_budget
from ct_service.search.production import Production, first_attempt
from ct_service.space import SearchSpace
from ct_service.start_mode import StartMode
from ct_service.target import Budget

SPACE = SearchSpace.from_spec(
    {
        "conv_blocks": {"role": "depth", "type": "int", "low": 1, "high": 4},
        "filters": {"role": "width", "type": "int", "values": [4, 8, 16]},
        "epochs": {"role": "epochs", "type": "int", "low": 1, "high": 12},
        "learning_rate": {"role": "learning_rate", "type": "float", "low": 0.0001, "high": 0.01},
    }
)
DEFAULTS = {
    "conv_blocks": 2,
    "filters": 4,
    "epochs": 3,
    "learning_rate": 0.001,
    "data": "/cache/new-version",
    "resume_from": "",
}
# production's run's params, as MLflow keeps them: text
PRODUCED = {
    "conv_blocks": "1",
    "filters": "16",
    "epochs": "2",
    "learning_rate": "0.003",
    "data": "/cache/old-version",
    "resume_from": "",
}
OWN = {"data"}  # the pipeline's new data version


def production(checkpoint: int = 2, **config: str) -> Production:
    return Production("3", "prodrun0123456789", {**PRODUCED, **config}, checkpoint)


@pytest.mark.unit
def test_the_first_attempt_takes_productions_configuration_not_the_defaults() -> None:
    first = first_attempt(DEFAULTS, OWN, production(), SPACE, StartMode.CONFIG)
    assert first.config == {
        "conv_blocks": 1,
        "filters": 16,
        "epochs": 2,
        "learning_rate": 0.003,
        "data": "/cache/new-version",  # the new version, not production's
        "resume_from": "",
    }
    assert first.reason == "warm start: production v3's configuration"
    assert first.continues == "" and first.start_epoch == 0


@pytest.mark.unit
def test_start_weights_continues_productions_run_for_as_many_epochs_as_it_trained() -> None:
    first = first_attempt(DEFAULTS, OWN, production(checkpoint=2), SPACE, StartMode.WEIGHTS)
    assert first.config["resume_from"] == "prodrun0123456789"
    assert first.config["epochs"] == 4  # its checkpoint's 2, then its configuration's 2 more
    assert (first.config["conv_blocks"], first.config["filters"]) == (1, 16)
    assert first.config["data"] == "/cache/new-version"
    assert first.continues == "prodrun0123456789" and first.start_epoch == 2
    assert first.reason.startswith("warm start: production v3's configuration and weights: ")
    assert "checkpoint at epoch 2 on the new data, 2 epoch(s) more (epochs 4)" in first.reason


@pytest.mark.unit
@pytest.mark.parametrize(
    ("defaults", "made", "space", "why"),
    [
        (
            {k: v for k, v in DEFAULTS.items() if k != "resume_from"},
            production(),
            SPACE,
            "the project declares no resume_from parameter",
        ),
        (
            DEFAULTS,
            production(checkpoint=0),
            SPACE,
            "production's run prodrun0 logged no checkpoint",
        ),
        (
            DEFAULTS,
            Production("3", "prodrun0123456789", {"epochs": "2", "learning_rate": "0.003"}, 2),
            SPACE,
            "the architecture changed (conv_blocks, filters differ from production's)",
        ),
        (
            DEFAULTS,
            production(),
            SearchSpace.from_spec(
                {"filters": {"role": "width", "type": "int", "low": 4, "high": 16}}
            ),
            "its search space has no single epochs dimension to continue along",
        ),
    ],
)
def test_start_weights_falls_back_to_the_configuration_and_says_why(
    defaults: dict, made: Production, space: SearchSpace, why: str
) -> None:
    first = first_attempt(defaults, OWN, made, space, StartMode.WEIGHTS)
    assert first.reason == f"warm start: production v3's configuration, from scratch: {why}"
    assert first.continues == "" and first.start_epoch == 0
    assert first.config.get("resume_from", "") == ""
    assert int(first.config["epochs"]) == int(made.config["epochs"])  # production's, not more


@pytest.mark.unit
def test_a_production_run_without_parameters_gives_the_defaults_and_says_so() -> None:
    made = Production("3", "prodrun0123456789", {}, 2)
    first = first_attempt(DEFAULTS, OWN, made, SPACE, StartMode.WEIGHTS)
    assert first.config == DEFAULTS
    assert first.reason == "production v3's run recorded no parameters: the project's defaults"


@pytest.mark.unit
def test_a_resume_from_production_recorded_is_never_taken() -> None:
    made = production(resume_from="someone-elses-run")
    assert first_attempt(DEFAULTS, OWN, made, SPACE, StartMode.CONFIG).config["resume_from"] == ""


def attempt(number: int, run_id: str, epochs: int, logged: int, checkpoint: int, **more) -> Attempt:
    config = {**DEFAULTS, "epochs": epochs, "resume_from": more.pop("resume_from", "")}
    return Attempt(
        number,
        run_id,
        config,
        AttemptStatus.FINISHED,
        metric=0.9,
        validation=tuple(0.9 for _ in range(logged)),
        checkpoint_epoch=checkpoint,
        **more,
    )


@pytest.mark.unit
def test_the_epoch_budget_charges_only_the_epochs_a_warm_start_trained() -> None:
    warm = attempt(1, "w", epochs=5, logged=3, checkpoint=5, start_epoch=2, resume_from="prod")
    assert epochs_trained([warm], SPACE) == 3
    # a continuation of it in the same pipeline: its curve carries the warm start's
    longer = attempt(2, "c", epochs=8, logged=6, checkpoint=8, resume_from="w")
    assert epochs_trained([warm, longer], SPACE) == 6
    # and one that ended before logging a curve: its checkpoint, less production's epochs
    bare = attempt(1, "b", epochs=5, logged=0, checkpoint=4, start_epoch=2, resume_from="prod")
    assert epochs_trained([bare], SPACE) == 2


@pytest.mark.unit
def test_the_epoch_budget_caps_a_warm_start_on_top_of_productions_checkpoint() -> None:
    wanted = Decision(Action.TRAIN, "warm", {**DEFAULTS, "epochs": 8}, continues="prod")
    budget = Budget(max_attempts=5, max_epochs=4)
    capped = within_epoch_budget(wanted, [], SPACE, budget, start_epoch=2)
    assert capped.config["epochs"] == 6  # production's 2, then the budget's 4
    assert capped.reason == "warm; epochs 6: what the budget has left"
    fits = Decision(Action.TRAIN, "warm", {**DEFAULTS, "epochs": 5}, continues="prod")
    assert within_epoch_budget(fits, [], SPACE, budget, start_epoch=2) == fits


def lenet_like(tmp_path: Path, ct_yaml: str) -> Path:
    (tmp_path / "MLproject").write_text(
        "name: small\nentry_points:\n  main:\n    parameters:\n"
        "      epochs: {type: float, default: 3}\n"
        "      resume_from: {type: string, default: ''}\n"
        "    command: python train.py\n"
    )
    (tmp_path / "ct.yaml").write_text(textwrap.dedent(ct_yaml))
    return tmp_path


@pytest.mark.unit
@pytest.mark.parametrize(
    ("ct_yaml", "start"),
    [
        ("data_trigger: {start: weights}\n", StartMode.WEIGHTS),
        ("data_trigger: {start: config}\n", StartMode.CONFIG),
        ("data_trigger: {}\n", StartMode.CONFIG),
        ("target: {metric: accuracy, threshold: 0.5}\n", StartMode.CONFIG),
    ],
)
def test_ct_yaml_data_trigger_start_is_read(tmp_path: Path, ct_yaml: str, start: StartMode) -> None:
    assert load_project(lenet_like(tmp_path, ct_yaml)).start is start


@pytest.mark.unit
@pytest.mark.parametrize(
    ("ct_yaml", "message"),
    [
        (
            "data_trigger: {start: checkpoint}\n",
            "data_trigger.start must be config or weights, got 'checkpoint'",
        ),
        ("data_trigger: {begin: weights}\n", "data_trigger: unknown key(s) begin; known: start"),
        ("data_trigger: weights\n", "data_trigger must be a mapping such as {start: weights}"),
    ],
)
def test_a_bad_data_trigger_in_ct_yaml_names_the_file_and_the_key(
    tmp_path: Path, ct_yaml: str, message: str
) -> None:
    with pytest.raises(ProjectError) as raised:
        load_project(lenet_like(tmp_path, ct_yaml))
    assert str(raised.value).startswith(f"{tmp_path / 'ct.yaml'}: {message}")
    assert "\n" not in str(raised.value)


def project_naming_a_run(folder: Path, default: str) -> Path:
    folder.mkdir()
    (folder / "MLproject").write_text(
        "name: naming\nentry_points:\n  main:\n    parameters:\n"
        "      epochs: {type: float, default: 2}\n"
        f"      resume_from: {{type: string, default: '{default}'}}\n"
        "    command: python -c 'raise SystemExit(3)'\n"
    )
    return folder


@pytest.mark.integration
def test_resume_from_names_no_run_outside_the_pipeline(tmp_path: Path, redis_url: str) -> None:
    """Only the service names a checkpoint: an MLproject whose resume_from default
    names another pipeline's run (what a pushed project could try, to read that run's
    artifacts), or a value given explicitly, starts from scratch and records so; and a
    checkpoint run outside the pipeline is refused before anything runs, in one line,
    the attempt left waiting."""
    from ct_service import run_tags
    from ct_service.attempt import AttemptStatus
    from ct_service.orchestration import pipeline
    from ct_service.settings import Settings
    from ct_service.tracking import Tracker

    settings = Settings(home=tmp_path / "ct", broker_url=redis_url)
    tracker = Tracker(settings)
    elsewhere = pipeline.create(settings, str(project_naming_a_run(tmp_path / "other", "")))
    foreign = tracker.client.create_run(
        tracker.pipeline(elsewhere).experiment_id,
        tags={run_tags.KIND: "attempt", run_tags.PIPELINE_ID: elsewhere},
    ).info.run_id

    by_default = pipeline.create(settings, str(project_naming_a_run(tmp_path / "a", foreign)))
    given = pipeline.create(
        settings, str(project_naming_a_run(tmp_path / "b", "")), {"resume_from": foreign}
    )
    for pipeline_id in (by_default, given):
        step = pipeline.start(settings, pipeline_id)
        assert step is not None
        run = tracker.client.get_run(step.args[1])
        assert run.data.params["resume_from"] == ""
        assert Tracker.run_parameters(run.data.tags)["resume_from"] == ""  # what it runs with

    # the one record a run's checkpoint comes from, were it to name another pipeline's run
    attempt_id = step.args[1]
    tracker.set_tags(attempt_id, {run_tags.CHECKPOINT_RUN: foreign})
    with pytest.raises(ProjectError) as refused:
        pipeline.run_attempt(settings, given, attempt_id)
    assert str(refused.value) == (
        f"resume_from names run {foreign}, which is neither an attempt of pipeline {given} "
        "nor the production run it retrains: refused"
    )
    attempt = tracker.attempts(tracker.pipeline(given), curves=False)[0]
    assert attempt.status is AttemptStatus.QUEUED  # not started: nothing ran, nothing lost
