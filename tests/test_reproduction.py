"""The pure parts of `ct-service reproduce`, as tables: which version a reference
names, the verdict, the data check, the version's list of reproductions, the
environment line, and the configuration a reproduction trains (an attempt stopped
early trains the epochs it kept; a continued one trains from scratch)."""

from __future__ import annotations

import pytest
from conftest import LENET

from ct_service import run_tags
from ct_service.data_check import DataCheck, compare
from ct_service.exceptions import CtError
from ct_service.orchestration.reproduce import trained_config
from ct_service.project import load_project
from ct_service.reproduction import (
    Reproduction,
    ReproductionOutcome,
    VersionReference,
    appended,
    environment,
    judge,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lenet", VersionReference("lenet", "production")),
        ("lenet@candidate", VersionReference("lenet", "candidate")),
        ("lenet@previous-production", VersionReference("lenet", "previous-production")),
        ("lenet/3", VersionReference("lenet", "", "3")),
        (" digits/12 ", VersionReference("digits", "", "12")),
    ],
)
def test_a_reference_names_a_version_by_alias_or_number(
    text: str, expected: VersionReference
) -> None:
    assert VersionReference.parse(text) == expected


@pytest.mark.parametrize("text", ["", "lenet/0", "lenet/x", "lenet@", "le net", "lenet/3@a", "/3"])
def test_a_reference_that_names_no_version_is_refused_with_the_forms_it_takes(text: str) -> None:
    with pytest.raises(CtError, match="MODEL@ALIAS or MODEL/VERSION"):
        VersionReference.parse(text)


def reproduction(allow_other_data: bool = False) -> Reproduction:
    return Reproduction(
        model="lenet",
        version="3",
        original_run="a" * 32,
        pipeline_id="b" * 32,
        commit="c" * 40,
        project="projects/lenet",
        source="https://git.example.com/ml/models.git",
        metric="test_accuracy",
        recorded=0.9,
        tolerance=0.005,
        allow_other_data=allow_other_data,
        config={"epochs": 3, "seed": 42},
    )


SAME = compare({"mnist-train": "11111111"}, {"mnist-train": "11111111"})
CHANGED = compare({"mnist-train": "11111111"}, {"mnist-train": "22222222"})
UNRECORDED = compare({}, {"mnist-train": "22222222"})


@pytest.mark.parametrize(
    ("now", "data", "allow", "failure", "outcome", "says"),
    [
        (0.9, SAME, False, "", ReproductionOutcome.REPRODUCED, "difference +0.0000"),
        (0.904, SAME, False, "", ReproductionOutcome.REPRODUCED, "difference +0.0040"),
        (0.895, SAME, False, "", ReproductionOutcome.REPRODUCED, "difference -0.0050"),
        (0.89, SAME, False, "", ReproductionOutcome.DIFFERS, "difference -0.0100"),
        (0.95, UNRECORDED, False, "", ReproductionOutcome.DIFFERS, "differs: test_accuracy 0.95"),
        (
            0.9,
            CHANGED,
            False,
            "",
            ReproductionOutcome.DATA_CHANGED,
            "refused: the data changed (mnist-train 11111111 recorded, 22222222 now)",
        ),
        (0.9, CHANGED, True, "", ReproductionOutcome.REPRODUCED, "on other data"),
        (0.8, CHANGED, True, "", ReproductionOutcome.DIFFERS, "on other data"),
        (None, SAME, False, "", ReproductionOutcome.FAILED, "logged no test_accuracy"),
        (None, SAME, False, "exit 1: boom", ReproductionOutcome.FAILED, "exit 1: boom"),
    ],
)
def test_the_verdict(
    now: float | None,
    data: DataCheck,
    allow: bool,
    failure: str,
    outcome: ReproductionOutcome,
    says: str,
) -> None:
    found, reason = judge(reproduction(allow), now, data, failure)
    assert found is outcome
    assert says in reason


def test_the_record_reads_back_what_it_wrote() -> None:
    written = reproduction(allow_other_data=True)
    assert Reproduction.from_tags(written.to_tags()) == written
    assert written.to_tags()[run_tags.KIND] == "reproduction"


@pytest.mark.parametrize(
    ("recorded", "now", "changed", "line"),
    [
        ({"a": "1" * 8}, {"a": "1" * 8}, False, "same digests: a 11111111"),
        ({"a": "1" * 8}, {"a": "2" * 8}, True, "changed: a 11111111 recorded, 22222222 now"),
        ({"a": "1" * 8, "b": "3" * 8}, {"a": "1" * 8}, True, "changed: b 33333333 recorded, none"),
        ({"a": "1" * 8}, {"a": "1" * 8, "z": "9" * 8}, True, "z none recorded, 99999999 now"),
        ({}, {"a": "1" * 8}, False, "not checked: the version recorded no data digest"),
        ({"v": "f" * 64}, {"v": "e" * 64}, True, "v ffffffffffff recorded, eeeeeeeeeeee now"),
    ],
)
def test_the_data_check(recorded: dict, now: dict, changed: bool, line: str) -> None:
    check = compare(recorded, now)
    assert check.changed is changed
    assert line in check.describe()


def test_the_versions_list_of_reproductions_adds_each_once_and_drops_the_oldest() -> None:
    assert appended("", "r1") == "r1"
    assert appended("r1", "r2") == "r1,r2"
    assert appended("r1,r2", "r1") == "r2,r1"
    long = ",".join(f"{n:032x}" for n in range(200))
    kept = appended(long, "f" * 32)
    assert len(kept) <= 4000 and kept.endswith("f" * 32) and f"{0:032x}" not in kept


@pytest.mark.parametrize(
    ("original", "now", "line"),
    [
        (
            {"ct.executor": "docker", "ct.environment.image_id": "sha256:" + "a" * 64},
            {
                "ct.executor": "docker",
                "ct.environment.image": "ct-env/lenet:1",
                "ct.environment.image_id": "sha256:" + "a" * 64,
            },
            "docker, the same image ct-env/lenet:1 (aaaaaaaaaaaa)",
        ),
        (
            {"ct.executor": "docker", "ct.environment.image_id": "sha256:" + "a" * 64},
            {
                "ct.executor": "docker",
                "ct.environment.image": "ct-env/lenet:1",
                "ct.environment.image_id": "sha256:" + "b" * 64,
            },
            "rebuilt: bbbbbbbbbbbb now, aaaaaaaaaaaa recorded",
        ),
        (
            {"ct.executor": "local", "ct.environment": "uv"},
            {"ct.executor": "local", "ct.environment": "uv"},
            "local: uv",
        ),
        (
            {"ct.executor": "local", "ct.environment": "uv"},
            {"ct.executor": "local", "ct.environment": "this env"},
            "local: this env (recorded: uv)",
        ),
        ({"ct.executor": "docker"}, {"ct.executor": "local"}, "local now, docker recorded"),
    ],
)
def test_the_environment_line(original: dict, now: dict, line: str) -> None:
    assert line in environment(original, now)


def test_an_attempt_stopped_early_is_trained_for_the_epochs_it_kept_from_scratch() -> None:
    project = load_project(LENET)
    recorded = {"epochs": 12, "seed": 42, "resume_from": "d" * 32}
    tags = {run_tags.STOPPED_EARLY: "target met: ...", run_tags.CHECKPOINT_LAST_EPOCH: "5"}
    assert trained_config(recorded, project, tags) == {"epochs": 5, "seed": 42, "resume_from": ""}


def test_an_attempt_that_ran_its_epochs_is_trained_as_recorded() -> None:
    project = load_project(LENET)
    recorded = {"epochs": 3, "seed": 7, "resume_from": ""}
    tags = {run_tags.CHECKPOINT_LAST_EPOCH: "3"}
    assert trained_config(recorded, project, tags) == recorded
