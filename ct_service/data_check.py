"""Whether a reproduction trained on the data the version recorded: the digest of each
dataset the version's run recorded, against the digest the reproduction's run
recorded for the same name. Pure: the caller reads the digests.

Today the digests are the MLflow dataset inputs a project logs (LeNet logs
`mnist-train`, `mnist-validation` and `mnist-test` with MLflow's digest of the arrays;
digits logs none: its data ships with scikit-learn). A data version recorded as a tag
(a content digest of a declared folder or S3 prefix) is one more name -> digest pair
here; when it is known before training, the same comparison refuses before anything
trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SHOWN = 12  # hex digits of a digest shown to people


@dataclass(frozen=True)
class DataDifference:
    name: str  # the dataset's name (or the data version's)
    recorded: str  # "" when the version recorded none by this name
    now: str  # "" when the reproduction recorded none by this name

    def describe(self) -> str:
        return f"{self.name} {_short(self.recorded)} recorded, {_short(self.now)} now"


@dataclass(frozen=True)
class DataCheck:
    recorded: Mapping[str, str]
    now: Mapping[str, str]
    differences: tuple[DataDifference, ...]

    @property
    def checked(self) -> bool:
        """Whether the version recorded any digest to check against."""
        return bool(self.recorded)

    @property
    def changed(self) -> bool:
        return bool(self.differences)

    def describe(self) -> str:
        """One line for people and for the run's tag."""
        if not self.checked:
            return "not checked: the version recorded no data digest"
        if self.changed:
            return "changed: " + "; ".join(d.describe() for d in self.differences)
        shown = ", ".join(f"{name} {_short(digest)}" for name, digest in sorted(self.now.items()))
        return f"same digests: {shown}"

    def to_json(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "changed": self.changed,
            "recorded": dict(self.recorded),
            "now": dict(self.now),
            "differences": [
                {"name": d.name, "recorded": d.recorded, "now": d.now} for d in self.differences
            ],
        }


def compare(recorded: Mapping[str, str], now: Mapping[str, str]) -> DataCheck:
    """Each dataset the version recorded against the reproduction's: a digest that
    differs, or one recorded on one side only, is a difference. Nothing recorded on
    the version: nothing to check (and no difference)."""
    if not recorded:
        return DataCheck({}, dict(now), ())
    differences = tuple(
        DataDifference(name, recorded.get(name, ""), now.get(name, ""))
        for name in sorted(set(recorded) | set(now))
        if recorded.get(name, "") != now.get(name, "")
    )
    return DataCheck(dict(recorded), dict(now), differences)


def dataset_digests(run: Any) -> dict[str, str]:
    """The digest of each dataset the run logged as an MLflow input, by name."""
    inputs = run.inputs.dataset_inputs if run.inputs else []
    return {each.dataset.name: each.dataset.digest for each in inputs}


def _short(digest: str) -> str:
    return digest[:SHOWN] if digest else "none"
