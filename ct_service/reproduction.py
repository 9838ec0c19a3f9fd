"""A reproduction: a registered model version's recorded configuration trained again
at its commit, in the environment it trained in, and its test metric compared with
the recorded one. The record (`to_tags()` beside `from_tags()`), which version a
reference names, and the verdict (pure: values in, outcome and one line out).
Creating and training it: orchestration/reproduce.py."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ct_service import run_tags
from ct_service.data_check import DataCheck
from ct_service.exceptions import CtError

KIND = "reproduction"  # its run's ct.kind
DEFAULT_ALIAS = "production"  # `reproduce lenet` means lenet@production
# 0.5 points of an accuracy: what issue #33 asks LeNet and digits to reproduce within
DEFAULT_TOLERANCE = 0.005
REFERENCE = re.compile(r"^(?P<model>[^@/\s]+)(?:@(?P<alias>[\w.-]+)|/(?P<version>[1-9]\d*))?$")


class ReproductionOutcome(str, Enum):
    REPRODUCED = "reproduced"  # the metric is within the tolerance of the recorded one
    DIFFERS = "differs"  # it trained on the same data, and the metric is further away
    DATA_CHANGED = "data-changed"  # refused: its data digests differ from the recorded ones
    FAILED = "failed"  # it could not be fetched, prepared or trained


@dataclass(frozen=True)
class VersionReference:
    """MODEL, MODEL@ALIAS or MODEL/VERSION."""

    model: str
    alias: str = ""
    version: str = ""

    @classmethod
    def parse(cls, text: str) -> VersionReference:
        match = REFERENCE.match(text.strip())
        if match is None:
            raise CtError(
                f"{text!r} names no model version: give MODEL (its @{DEFAULT_ALIAS}), "
                "MODEL@ALIAS or MODEL/VERSION, e.g. lenet, lenet@candidate, lenet/3"
            )
        alias, version = match.group("alias") or "", match.group("version") or ""
        return cls(match.group("model"), alias or ("" if version else DEFAULT_ALIAS), version)

    def describe(self) -> str:
        return f"{self.model}/{self.version}" if self.version else f"{self.model}@{self.alias}"


@dataclass(frozen=True)
class Reproduction:
    """What a reproduction trains, written when it is created: which version, the run
    and pipeline that trained it, where its code is, and what it is judged by."""

    model: str
    version: str
    original_run: str  # the run that trained the version
    pipeline_id: str  # that run's pipeline ("" when it is not recorded)
    commit: str
    project: str  # the project's folder, or its path inside the repository
    source: str  # the repository the commit is fetched from (a URL or a local path)
    metric: str  # the pipeline's target metric
    recorded: float
    tolerance: float = DEFAULT_TOLERANCE
    allow_other_data: bool = False
    config: Mapping[str, Any] = field(default_factory=dict)  # the original's parameters

    def to_tags(self) -> dict[str, str]:
        return {
            run_tags.KIND: KIND,
            run_tags.REPRODUCES_MODEL: self.model,
            run_tags.REPRODUCES_VERSION: self.version,
            run_tags.REPRODUCES_RUN: self.original_run,
            run_tags.REPRODUCES_PIPELINE: self.pipeline_id,
            run_tags.COMMIT: self.commit,
            run_tags.PROJECT: self.project,
            run_tags.REPRODUCTION_SOURCE: self.source,
            run_tags.REPRODUCTION_METRIC: self.metric,
            run_tags.REPRODUCTION_RECORDED: repr(self.recorded),
            run_tags.REPRODUCTION_TOLERANCE: repr(self.tolerance),
            run_tags.REPRODUCTION_ALLOW_OTHER_DATA: "true" if self.allow_other_data else "false",
            run_tags.CONFIG: json.dumps(dict(self.config), sort_keys=True),
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Reproduction:
        if tags.get(run_tags.KIND) != KIND:
            raise CtError("this run is not a ct-service reproduction")
        return cls(
            model=tags[run_tags.REPRODUCES_MODEL],
            version=tags[run_tags.REPRODUCES_VERSION],
            original_run=tags[run_tags.REPRODUCES_RUN],
            pipeline_id=tags.get(run_tags.REPRODUCES_PIPELINE, ""),
            commit=tags[run_tags.COMMIT],
            project=tags[run_tags.PROJECT],
            source=tags[run_tags.REPRODUCTION_SOURCE],
            metric=tags[run_tags.REPRODUCTION_METRIC],
            recorded=float(tags[run_tags.REPRODUCTION_RECORDED]),
            tolerance=float(tags[run_tags.REPRODUCTION_TOLERANCE]),
            allow_other_data=tags.get(run_tags.REPRODUCTION_ALLOW_OTHER_DATA) == "true",
            config=json.loads(tags.get(run_tags.CONFIG, "{}")),
        )


def judge(
    reproduction: Reproduction, now: float | None, data: DataCheck, failure: str = ""
) -> tuple[ReproductionOutcome, str]:
    """The outcome and its one-line reason. Other data is refused unless allowed; a
    run that logged no value of the metric failed."""
    metric = reproduction.metric
    if failure:
        return ReproductionOutcome.FAILED, failure
    if now is None:
        return ReproductionOutcome.FAILED, f"the reproduction logged no {metric}"
    delta = now - reproduction.recorded
    compared = (
        f"{metric} {now:.4f} now, {reproduction.recorded:.4f} recorded, "
        f"difference {delta:+.4f} (tolerance {reproduction.tolerance:g})"
    )
    if data.changed and not reproduction.allow_other_data:
        return ReproductionOutcome.DATA_CHANGED, (
            f"refused: the data changed ({'; '.join(d.describe() for d in data.differences)}); "
            f"--allow-other-data compares anyway ({compared})"
        )
    other = "; on other data (--allow-other-data)" if data.changed else ""
    if abs(delta) <= reproduction.tolerance + 1e-12:  # a difference of exactly it reproduces
        return ReproductionOutcome.REPRODUCED, f"reproduced: {compared}{other}"
    return ReproductionOutcome.DIFFERS, f"differs: {compared}{other}"


def appended(listed: str, run_id: str, limit: int = 4000) -> str:
    """The version's list of reproduction runs with `run_id` added (once), oldest
    first, the oldest dropped past `limit` characters (MLflow keeps 5,000 in a tag)."""
    runs = [r for r in listed.split(",") if r and r != run_id] + [run_id]
    while len(",".join(runs)) > limit and len(runs) > 1:
        runs.pop(0)
    return ",".join(runs)


def environment(original: Mapping[str, str], now: Mapping[str, str]) -> str:
    """One line: where it trained then and now (the image's content id in Docker)."""
    executor = now.get(run_tags.EXECUTOR, "?")
    then = original.get(run_tags.EXECUTOR, "")
    if then and then != executor:
        return f"{executor} now, {then} recorded"
    if executor == "docker":
        recorded, current = (t.get(run_tags.ENVIRONMENT_IMAGE_ID, "") for t in (original, now))
        image = now.get(run_tags.ENVIRONMENT_IMAGE, "")
        if recorded and recorded != current:
            return f"docker, image {image} rebuilt: {_id(current)} now, {_id(recorded)} recorded"
        return f"docker, the same image {image} ({_id(current)})"
    reason = now.get(run_tags.ENVIRONMENT, "")
    if original.get(run_tags.ENVIRONMENT, reason) != reason:
        return f"local: {reason} (recorded: {original[run_tags.ENVIRONMENT]})"
    return f"local: {reason}" if reason else "local"


def _id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12] or "unknown"
