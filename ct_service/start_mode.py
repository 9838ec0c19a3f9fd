"""How a pipeline that retrains production on new data (the data trigger, a schedule,
the decay watch) starts: ct.yaml `data_trigger: {start: config}` (the default) trains
production's configuration from scratch; `{start: weights}` continues production's
run from its checkpoint on the new data where the project can (search/production.py)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any


class StartMode(str, Enum):
    CONFIG = "config"  # production's parameters, trained from scratch
    WEIGHTS = "weights"  # production's parameters and weights: its checkpoint trained on


def parse_data_trigger(value: Any) -> StartMode:
    """ct.yaml's `data_trigger` block; ValueError naming the key and the choices."""
    if value is None:
        return StartMode.CONFIG
    if not isinstance(value, Mapping):
        raise ValueError(f"data_trigger must be a mapping such as {{start: weights}}: {value!r}")
    unknown = sorted(str(key) for key in value if key != "start")
    if unknown:
        raise ValueError(f"data_trigger: unknown key(s) {', '.join(unknown)}; known: start")
    start = value.get("start", StartMode.CONFIG.value)
    try:
        return StartMode(start)
    except ValueError:
        choices = " or ".join(m.value for m in StartMode)
        raise ValueError(f"data_trigger.start must be {choices}, got {start!r}") from None
