"""The goal of a pipeline (metric, threshold, direction) and its budget."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ct_service.settings import Settings

TARGET_KEYS = ("metric", "threshold", "direction")


class Direction(str, Enum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


@dataclass(frozen=True)
class Target:
    metric: str = "test_accuracy"
    threshold: float = 0.8
    direction: Direction = Direction.MAXIMIZE

    def __post_init__(self) -> None:
        if not self.metric:
            raise ValueError("target metric must not be empty")
        if not math.isfinite(self.threshold):
            raise ValueError(f"target threshold must be a finite number, got {self.threshold}")
        object.__setattr__(self, "direction", Direction(self.direction))

    @classmethod
    def from_spec(cls, spec: Any) -> Target:
        """A target as files declare it (ct.yaml, repositories.yaml): a mapping of
        metric, threshold and direction, each defaulting as Target() does. Raises
        ValueError naming the key at fault."""
        if not isinstance(spec, dict):
            raise ValueError("target: must be a mapping of metric, threshold, direction")
        unknown = sorted(str(key) for key in spec if key not in TARGET_KEYS)
        if unknown:
            raise ValueError(
                f"target: unknown key(s) {', '.join(unknown)}; known: {', '.join(TARGET_KEYS)}"
            )
        metric = spec.get("metric", cls.metric)
        if not isinstance(metric, str):
            raise ValueError(f"target: metric must be a metric name, got {metric!r}")
        threshold = spec.get("threshold", cls.threshold)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ValueError(f"target: threshold must be a number, got {threshold!r}")
        direction = spec.get("direction", cls.direction.value)
        if not isinstance(direction, str) or direction not in {d.value for d in Direction}:
            raise ValueError(f"target: direction must be maximize or minimize, got {direction!r}")
        try:
            return cls(metric, float(threshold), Direction(direction))
        except OverflowError:
            raise ValueError(f"target: threshold {threshold} is too large") from None
        except ValueError as error:
            raise ValueError(f"target: {error}") from None

    def is_met(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.direction is Direction.MAXIMIZE:
            return value >= self.threshold
        return value <= self.threshold

    def is_better(self, value: float | None, than: float | None) -> bool:
        """True when `value` is strictly better than `than` (a missing value is worst)."""
        if value is None or not math.isfinite(value):
            return False
        if than is None or not math.isfinite(than):
            return True
        return value > than if self.direction is Direction.MAXIMIZE else value < than

    def describe(self) -> str:
        sign = ">=" if self.direction is Direction.MAXIMIZE else "<="
        return f"{self.metric} {sign} {self.threshold:g}"


def choose_target(
    given: Target | None, settings: Settings, declared: Target | None
) -> tuple[Target, str]:
    """A pipeline's target and who set it, strongest first: given (the command line,
    repositories.yaml), CT_TARGET_*, the project's ct.yaml, the built-in default."""
    if given is not None:
        return given, "given"
    if settings.target_set:
        return settings.target, "settings"
    if declared is not None:
        return declared, "ct.yaml"
    return settings.target, "default"


@dataclass(frozen=True)
class Budget:
    max_attempts: int = 5
    max_wall_seconds: float = 0.0  # 0 = no wall-time limit
    max_epochs: int = 0  # epochs trained over all attempts (a continued one once); 0 = none

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.max_wall_seconds < 0:
            raise ValueError(
                f"max_wall_seconds must be 0 (none) or more, got {self.max_wall_seconds}"
            )
        if self.max_epochs < 0:
            raise ValueError(f"max_epochs must be 0 (none) or more, got {self.max_epochs}")

    def describe(self) -> str:
        epochs = f", {self.max_epochs} epochs" if self.max_epochs else ""
        wall = f", {self.max_wall_seconds:g} s" if self.max_wall_seconds else ""
        return f"{self.max_attempts} attempts{epochs}{wall}"
