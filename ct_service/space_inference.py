"""A search space read off an MLflow project's typed parameters, for a project
without ct.yaml (ct.yaml always wins). The rule, by parameter name (case, `_` and `-`
ignored), for numeric parameters with a default:

- epochs, n_epochs, num_epochs, max_epochs, max_iter: epochs, 1 .. 8x the default;
- learning_rate, lr, eta: learning rate, default / 100 .. default x 100 (at most 1);
- alpha, l1, l2, reg, reg_alpha, reg_lambda, lambda, weight_decay: regularization,
  default / 100 .. default x 100; dropout: regularization, 0 .. 0.9;
- depth, max_depth, layers, n_layers, num_layers, blocks, conv_blocks: depth,
  1 .. default + 4;
- width, units, hidden_units, hidden_size, dense_units, filters, n_estimators,
  num_leaves: width, default / 4 .. default x 8.

Anything else is left as it is. `ct-service space PROJECT` prints the result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ct_service.space import Dimension, Role, SearchSpace

ROLES_BY_NAME: dict[str, Role] = {
    **dict.fromkeys(("epochs", "nepochs", "numepochs", "maxepochs", "maxiter"), Role.EPOCHS),
    **dict.fromkeys(("learningrate", "lr", "eta"), Role.LEARNING_RATE),
    **dict.fromkeys(
        ("alpha", "l1", "l2", "reg", "regalpha", "reglambda", "lambda", "weightdecay", "dropout"),
        Role.REGULARIZATION,
    ),
    **dict.fromkeys(
        ("depth", "maxdepth", "layers", "nlayers", "numlayers", "blocks", "convblocks"),
        Role.DEPTH,
    ),
    **dict.fromkeys(
        (
            "width",
            "units",
            "hiddenunits",
            "hiddensize",
            "denseunits",
            "filters",
            "nestimators",
            "numleaves",
        ),
        Role.WIDTH,
    ),
}


def infer_space(parameters: Mapping[str, tuple[str, Any]]) -> SearchSpace:
    """The space for `parameters` (name -> (MLproject type, default)) by the rule above."""
    dimensions = []
    for name, (declared_type, default) in parameters.items():
        role = ROLES_BY_NAME.get(name.lower().replace("_", "").replace("-", ""))
        number = _number(default)
        if role is None or number is None or declared_type not in ("float", "int", "string"):
            continue
        dimension = _dimension(name, role, number, declared_type)
        if dimension is not None:
            dimensions.append(dimension)
    return SearchSpace(tuple(dimensions))


def _dimension(name: str, role: Role, default: float, declared_type: str) -> Dimension | None:
    whole = default.is_integer() and declared_type != "float"
    if role is Role.EPOCHS and default >= 1:
        return Dimension(name, role, "int", 1, max(default * 8, default + 1))
    if role is Role.DEPTH and default >= 1 and whole:
        return Dimension(name, role, "int", 1, default + 4)
    if role is Role.WIDTH and default >= 1 and whole:
        return Dimension(name, role, "int", max(1.0, math.floor(default / 4)), default * 8)
    if declared_type == "int":  # the rest are fractions: an int parameter cannot take them
        return None
    if role is Role.REGULARIZATION and name.lower() == "dropout" and 0 <= default < 1:
        return Dimension(name, role, "float", 0.0, 0.9)
    if role is Role.LEARNING_RATE and 0 < default <= 1:
        return Dimension(name, role, "float", default / 100, min(1.0, default * 100))
    if role is Role.REGULARIZATION and default > 0:
        return Dimension(name, role, "float", default / 100, default * 100)
    return None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
