"""The command line's conventions: --version, a description and an example in every
--help, short pipeline ids, `status` as a table that never creates a store, and
MLflow's INFO lines kept out of sight unless -v. Stores are real SQLite files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
from conftest import ct_env

from ct_service import run_tags
from ct_service.cli.exit_codes import MEANINGS
from ct_service.cli.main import main
from ct_service.cli.pipeline_table import HEADER
from ct_service.exceptions import AmbiguousPipelineId, PipelineNotFound
from ct_service.tracking import PipelineSpec, Tracker

COMMANDS = ("run", "status", "space", "rollback", "history", "approve", "reject", "worker", "beat")
COMMANDS += ("watchdog", "serve")
COMMANDS += ("send-sample",)
COMMANDS += ("reproduce",)


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as leaving:
        main([*argv, "--help"])
    assert leaving.value.code == 0
    return capsys.readouterr().out


@pytest.mark.unit
def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as leaving:
        main(["--version"])
    assert leaving.value.code == 0
    assert capsys.readouterr().out == f"ct-service {metadata.version('ct-service')}\n"


@pytest.mark.unit
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_description_and_an_example(command, capsys):
    text = help_of(capsys, command)
    usage, description = text.split("\n\n")[:2]
    assert usage.startswith(f"usage: ct-service {command}")
    assert len(description.split()) >= 8, description  # a sentence, not just the usage
    examples = text.split("examples:\n", 1)[1].splitlines()
    assert examples and all(f"ct-service {command}" in line for line in examples)
    for option in ("-q, --quiet", "-v, --verbose"):
        assert option in text


@pytest.mark.unit
def test_run_help_lists_the_exit_codes_and_the_defaults(capsys):
    text = " ".join(help_of(capsys, "run").split())  # unwrapped
    for code, meaning in MEANINGS.items():
        assert f"{code} {meaning}" in text
    assert "else test_accuracy" in text and "else 0.8" in text  # the target's defaults
    assert "(default: CT_MAX_ATTEMPTS, else 5)" in text
    assert "(default: pipeline,training,notify,status)" in " ".join(
        help_of(capsys, "worker").split()
    )


def spec(project: str = "digits") -> PipelineSpec:
    return PipelineSpec(
        project_path=f"/projects/{project}",
        project_name=project,
        model_name=project,
        initial_config={"epochs": 2},
    )


def pipelines_sharing_a_first_character(tracker: Tracker) -> list[str]:
    """Pipelines until two ids start alike (17 at most: there are 16 hex digits)."""
    made: list[str] = []
    while len({run_id[0] for run_id in made}) == len(made):
        made.append(tracker.create_pipeline(spec()))
    return [run_id for run_id in made if run_id[0] == made[-1][0]]


@pytest.mark.integration
def test_a_unique_prefix_names_its_pipeline_and_an_ambiguous_one_lists_the_matches(
    settings, monkeypatch, capsys
):
    tracker = Tracker(settings)
    first, second = pipelines_sharing_a_first_character(tracker)
    assert tracker.resolve_pipeline_id(first) == first
    assert tracker.resolve_pipeline_id(first[:8]) == first
    with pytest.raises(AmbiguousPipelineId) as ambiguous:
        tracker.resolve_pipeline_id(first[:1], min_prefix=1)
    message = str(ambiguous.value)
    assert "\n" not in message and first in message and second in message
    with pytest.raises(PipelineNotFound, match=f"^no pipeline {first[:7]}$"):
        tracker.resolve_pipeline_id(first[:7])  # shorter than a short id
    unknown = "0" * 8 if not first.startswith("0" * 8) else "f" * 8
    with pytest.raises(PipelineNotFound, match=f"^no pipeline {unknown}$"):
        tracker.resolve_pipeline_id(unknown)

    monkeypatch.setenv("CT_HOME", str(settings.home))
    assert main(["status", first[:8], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pipeline_id"] == first
    assert main(["status", unknown]) == 4
    assert capsys.readouterr().err == f"error: no pipeline {unknown}\n"


def listing(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.integration
def test_status_and_rollback_in_a_folder_without_a_store_create_nothing(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")  # CT_HOME defaults to ./.ct-service
    before = listing(tmp_path)
    store = tmp_path / "work" / ".ct-service" / "mlflow.db"

    assert main(["status"]) == 0
    assert capsys.readouterr().out == (
        f"no pipelines yet: no store at {store} (`ct-service run PROJECT` creates it)\n"
    )
    assert main(["status", "--json"]) == 0
    assert capsys.readouterr().out == "[]\n"
    assert main(["status", "708ae253"]) == 4
    assert capsys.readouterr().err == f"error: no pipeline 708ae253 (no store at {store})\n"
    assert main(["rollback", "lenet"]) == 2
    assert capsys.readouterr().err == (f"error: no registered model 'lenet'; no store at {store}\n")
    assert listing(tmp_path) == before


@pytest.mark.integration
def test_status_lists_pipelines_as_a_table_and_q_hides_progress(settings, monkeypatch, capsys):
    tracker = Tracker(settings)
    pushed = tracker.create_pipeline(spec("lenet"), extra_tags={run_tags.PUSH_ID: "push-1"})
    typed = tracker.create_pipeline(spec("digits"))
    pipeline = tracker.pipeline(typed)
    for number, accuracy in ((1, 0.91), (2, 0.85)):
        attempt = tracker.create_attempt(pipeline, number, {"epochs": 2}, "first try")
        tracker.client.log_metric(attempt, "test_accuracy", accuracy)
        tracker.set_tags(attempt, {run_tags.STATUS: "running"})
    monkeypatch.setenv("CT_HOME", str(settings.home))

    assert main(["status"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert tuple(re.split(r"\s{2,}", header)) == HEADER
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(pipeline.started_ms / 1000))
    assert re.split(r"\s{2,}", rows[0]) == [
        typed[:8],
        "digits",
        "run",
        started,
        "queued",
        "-",
        "test_accuracy 0.9100",
        "2",
    ]
    assert re.split(r"\s{2,}", rows[1])[:3] == [pushed[:8], "lenet", "push"]
    assert re.split(r"\s{2,}", rows[1])[4:] == ["queued", "-", "-", "0"]  # no attempt yet

    assert main(["status", typed]) == 0
    assert "attempt 1: epochs=2" in capsys.readouterr().out  # progress lines
    assert main(["-q", "status", typed]) == 0
    shown = capsys.readouterr().out
    assert "attempt 1:" not in shown and f"pipeline {typed[:8]}" in shown  # the summary stays
    assert main(["status", typed, "-q"]) == 0  # after the command as well
    assert "attempt 1:" not in capsys.readouterr().out


@pytest.mark.integration
def test_mlflow_info_lines_show_only_with_v(tmp_path):
    """A store file with no tables yet: MLflow creates them and says so at INFO."""
    shown = {}
    for flags in ((), ("-v",)):
        home = tmp_path / f"ct{len(flags)}"
        home.mkdir()
        (home / "mlflow.db").touch()
        result = subprocess.run(
            [sys.executable, "-m", "ct_service.cli", *flags, "status"],
            env=ct_env(CT_HOME=str(home)),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("no pipelines yet in ")
        shown[flags] = result.stderr
    assert shown[()] == ""
    assert "INFO mlflow" in shown[("-v",)]
