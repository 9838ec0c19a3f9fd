"""The goal of a pipeline (metric, threshold, direction) and its budget."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


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


@dataclass(frozen=True)
class Budget:
    max_attempts: int = 5
    max_wall_seconds: float = 0.0  # 0 = no wall-time limit

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.max_wall_seconds < 0:
            raise ValueError(
                f"max_wall_seconds must be 0 (none) or more, got {self.max_wall_seconds}"
            )

    def describe(self) -> str:
        wall = f", {self.max_wall_seconds:g} s" if self.max_wall_seconds else ""
        return f"{self.max_attempts} attempts{wall}"
