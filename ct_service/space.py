"""The search space a project declares in its ct.yaml: which parameters the policy
may change, within which bounds, and what each one means to it (its role)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

Config = dict[str, Any]
ConfigKey = tuple[float | None, ...]  # what makes two configurations the same


def param_text(value: Any) -> str:
    """A configuration value as MLflow passes it to a project (`-P name=text`),
    losslessly: a float keeps its shortest exact form ("1.0", "0.0001234567"), so a
    project that logs its own float() of it logs the same text."""
    return repr(value) if isinstance(value, float) else str(value)


class Role(str, Enum):
    DEPTH = "depth"  # more layers / blocks = more capacity
    WIDTH = "width"  # more units / filters = more capacity
    REGULARIZATION = "regularization"  # more = less over-fitting
    EPOCHS = "epochs"
    LEARNING_RATE = "learning_rate"
    SCHEDULE = "schedule"  # more = the learning rate falls faster over the epochs
    OTHER = "other"  # no direction the rules know (l1_ratio, subsample, C): only TPE moves it


@dataclass(frozen=True)
class Dimension:
    name: str
    role: Role
    kind: str  # "int" or "float"
    low: float
    high: float
    values: tuple[float, ...] = ()  # when set, the only allowed values (sorted)
    log: bool = False  # sampled on a log scale (learning rates always are)

    @classmethod
    def from_spec(cls, name: str, spec: Any) -> Dimension:
        if not isinstance(spec, Mapping):
            raise ValueError(
                f"search_space.{name} must be a mapping like {{role: width, type: int, "
                f"low: 1, high: 8}}, got {spec!r}"
            )
        try:
            role = Role(spec["role"])
        except (KeyError, ValueError, TypeError):
            roles = ", ".join(r.value for r in Role)
            raise ValueError(
                f"search_space.{name}.role must be one of {roles}, got {spec.get('role')!r}"
            ) from None
        kind = spec.get("type", "float")
        if kind not in ("int", "float"):
            raise ValueError(f"search_space.{name}.type must be int or float, got {kind!r}")
        listed = spec.get("values", ())
        if not isinstance(listed, list | tuple):
            raise ValueError(f"search_space.{name}.values must be a list, got {listed!r}")
        values = tuple(sorted(_number(v, f"{name}.values") for v in listed))
        low = _number(spec.get("low", values[0] if values else math.nan), f"{name}.low")
        high = _number(spec.get("high", values[-1] if values else math.nan), f"{name}.high")
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise ValueError(
                f"search_space.{name}: needs low <= high (got low {low:g}, high {high:g}), "
                "or a list of values"
            )
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise ValueError(f"search_space.{name}.log must be true or false, got {log!r}")
        if log and (low <= 0 or (kind == "int" and low < 1)):
            raise ValueError(
                f"search_space.{name}: a log scale needs low > 0 (an int's at least 1), got {low:g}"
            )
        return cls(name, role, kind, low, high, values, log)

    def cast(self, value: Any) -> float | int:
        number = float(value)
        return int(round(number)) if self.kind == "int" else number

    def contains(self, value: Any) -> bool:
        number = float(value)
        if self.values:
            return any(math.isclose(number, v) for v in self.values)
        return self.low <= number <= self.high

    def clamp(self, value: Any) -> float | int:
        number = min(max(float(value), self.low), self.high)
        if self.values:
            number = min(self.values, key=lambda v: abs(v - number))
        return self.cast(number)

    def up(self, value: Any, factor: float = 2.0) -> float | int | None:
        """The next larger value: the next listed value, else +1 (int) or x factor."""
        number = float(value)
        if self.values:
            larger = [v for v in self.values if v > number and not math.isclose(v, number)]
            return self.cast(larger[0]) if larger else None
        if self.role is Role.DEPTH:
            candidate = number + 1
        elif self.kind == "int":
            candidate = max(number + 1, math.ceil(number * factor))
        else:
            candidate = number * factor
        return self.cast(min(candidate, self.high)) if number < self.high else None

    def down(self, value: Any, factor: float = 2.0) -> float | int | None:
        number = float(value)
        if self.values:
            smaller = [v for v in self.values if v < number and not math.isclose(v, number)]
            return self.cast(smaller[-1]) if smaller else None
        if self.role is Role.DEPTH:
            candidate = number - 1
        elif self.kind == "int":
            candidate = min(number - 1, math.floor(number / factor))
        else:
            candidate = number / factor
        return self.cast(max(candidate, self.low)) if number > self.low else None


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...] = ()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> SearchSpace:
        if not spec:
            return cls()
        if not isinstance(spec, Mapping):
            raise ValueError("search_space must be a mapping of parameter name to its spec")
        return cls(tuple(Dimension.from_spec(name, dim) for name, dim in spec.items()))

    def to_spec(self) -> dict[str, dict[str, Any]]:
        """The space as ct.yaml's `search_space` declares it (from_spec reads it back)."""
        spec: dict[str, dict[str, Any]] = {}
        for d in self.dimensions:
            entry: dict[str, Any] = {"role": d.role.value, "type": d.kind}
            if d.values:
                entry["values"] = [d.cast(v) for v in d.values]
            else:
                entry["low"], entry["high"] = d.cast(d.low), d.cast(d.high)
            if d.log:
                entry["log"] = True
            spec[d.name] = entry
        return spec

    def with_role(self, role: Role) -> list[Dimension]:
        return [d for d in self.dimensions if d.role is role]

    def key(self, config: Mapping[str, Any]) -> ConfigKey:
        """What makes two configurations the same in the policy's eyes."""
        return tuple(float(config[d.name]) if d.name in config else None for d in self.dimensions)

    def outside(self, config: Mapping[str, Any]) -> list[Dimension]:
        return [d for d in self.dimensions if d.name in config and not d.contains(config[d.name])]

    def normalise(self, config: Mapping[str, Any]) -> Config:
        """Searched parameters as numbers of their declared kind; the rest unchanged."""
        result = dict(config)
        for d in self.dimensions:
            if d.name in result:
                result[d.name] = d.cast(result[d.name])
        return result


def _number(value: Any, key: str) -> float:
    """A number from ct.yaml (booleans are not numbers there), or an error naming its key."""
    if isinstance(value, bool):
        raise ValueError(f"search_space.{key} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"search_space.{key} must be a number, got {value!r}") from None
