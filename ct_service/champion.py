"""The champion's side of a promotion decision: the number production is compared with
and where it came from, and the one-line decision people read.

Production is compared on the candidate's test data when it can be: re-scored on the
candidate's data version (orchestration/champion_scoring.py). When it cannot be (the
candidate records no data version, production trained on no declared data, or its
scoring failed), the metric its own run logged when it was trained is used, and the
decision says so and why. Pure: values in, text out."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import Enum

SHORT = 12  # hex digits of a data version shown to people (data_version.SHORT)


class Basis(str, Enum):
    """Where production's number came from."""

    RESCORED = "re-scored"  # scored on the candidate's data version
    STORED = "stored"  # the metric its run logged when it was trained


@dataclass(frozen=True)
class ChampionScore:
    version: str  # the registered version holding @production when it was scored
    metric: str
    value: float | None  # the number compared with (re-scored, else the stored one)
    basis: Basis
    stored: float | None  # the metric its run logged when it was trained
    data_version: str = ""  # the candidate's data version (digest), "" when none
    method: str = ""  # how it was re-scored (scoring.Method's value)
    why_stored: str = ""  # why the stored metric is used (one line)
    run_id: str = ""  # the scoring run, when one ran

    @classmethod
    def rescored(
        cls,
        version: str,
        metric: str,
        value: float,
        stored: float | None,
        data_version: str,
        method: str,
        run_id: str,
    ) -> ChampionScore:
        return cls(version, metric, value, Basis.RESCORED, stored, data_version, method,
                   "", run_id)  # fmt: skip

    @classmethod
    def from_stored(
        cls,
        version: str,
        metric: str,
        stored: float | None,
        why: str,
        data_version: str = "",
        run_id: str = "",
    ) -> ChampionScore:
        why = " ".join(why.split())
        return cls(version, metric, stored, Basis.STORED, stored, data_version, "", why, run_id)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ChampionScore | None:
        """The score a pipeline's tag holds; None for none or an unreadable one."""
        try:
            data = json.loads(text)
            return cls(**{**data, "basis": Basis(data["basis"])})
        except (TypeError, KeyError, ValueError):
            return None

    @property
    def data_short(self) -> str:
        return self.data_version[:SHORT]

    def basis_text(self) -> str:
        """How production's number was obtained, one clause for the decision."""
        stored = f"its stored {self.metric} {score_text(self.stored)}"
        if self.basis is Basis.RESCORED:
            return (
                f"both on data version {self.data_short}: production v{self.version} "
                f"re-scored by {self.method}, {stored}"
            )
        if self.data_version:  # it was to be scored on the candidate's data and was not
            return (
                f"production v{self.version} could not be scored on {self.data_short}: "
                f"{self.why_stored}; compared with {stored}"
            )
        return (
            f"production v{self.version} not re-scored ({self.why_stored}); compared with {stored}"
        )


def score_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def decision(
    outcome: str,
    version: str,
    metric: str,
    candidate: float | None,
    champion: ChampionScore | None,
) -> str:
    """The decision about candidate `version` against production, one line with both
    numbers, the data version and how production's number was obtained:

    - "kept": "kept version 3 in production: its test_accuracy 0.95 is not worse than
      the candidate's 0.91; both on data version abc...: production v3 re-scored by ..."
    - "promoted": "version 5 promoted with test_accuracy 0.91 against production v3's
      0.62 (replacing version 3); both on data version abc...: ..."
    - "proposed": "version 5 awaits approval as @candidate: test_accuracy 0.91 against
      production's 0.62 (version 3); both on ..." (the caller adds how to act on it)."""
    score = score_text(candidate)
    if champion is None:
        if outcome == "proposed":
            return (
                f"version {version} awaits approval as @candidate: {metric} {score} "
                "against no version in production"
            )
        return f"version {version} promoted with {metric} {score}"
    held, theirs = champion.version, score_text(champion.value)
    basis = champion.basis_text()
    if outcome == "kept":
        return (
            f"kept version {held} in production: its {metric} {theirs} is not worse than "
            f"the candidate's {score}; {basis}"
        )
    if outcome == "proposed":
        return (
            f"version {version} awaits approval as @candidate: {metric} {score} against "
            f"production's {theirs} (version {held}); {basis}"
        )
    return (
        f"version {version} promoted with {metric} {score} against production v{held}'s "
        f"{theirs} (replacing version {held}); {basis}"
    )
