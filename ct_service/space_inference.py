"""A search space read off an MLflow project's typed parameters, for a project
without ct.yaml (ct.yaml always wins). RULES says, by parameter name (case, `_` and
`-` ignored), the role a numeric parameter with a default plays and its bounds, which
follow from the default:

- epochs, n_epochs, num_epochs, max_epochs, max_iter: epochs, 1 .. 8x the default;
- learning_rate, lr, eta: learning rate, default / 100 .. default x 100 (at most 1);
- penalties, more = a simpler model (alpha, l1, l2, reg, reg_alpha, reg_lambda,
  lambda, lambda_l1, lambda_l2, weight_decay, gamma, min_child_weight): regularization,
  default / 100 .. default x 100 on a log scale; dropout: regularization, 0 .. 0.9;
  min_samples_leaf, min_child_samples, min_data_in_leaf: regularization, default / 4 ..
  default x 20 on a log scale;
- depth, max_depth, layers, n_layers, num_layers, blocks, conv_blocks: depth,
  1 .. default + 4;
- width, units, hidden_units, hidden_size, dense_units, filters, the number of trees
  (n_estimators, num_boost_round, num_iterations, ...), num_leaves: width,
  default / 4 .. default x 8;
- C (inverse penalty): other, default / 100 .. default x 100 on a log scale;
  sampling fractions (subsample, colsample_bytree, colsample_bylevel, colsample_bynode,
  feature_fraction, bagging_fraction): other, 0.5 .. 1; max_features, max_samples
  given as a fraction: other, 0.1 .. 1; any other `*_ratio` or `*_fraction`
  (l1_ratio) in [0, 1]: other, 0 .. 1, unless its name says it splits the data
  (validation_fraction, test_ratio, ...).

Role `other` has no direction the policy's rules know (a higher l1_ratio is neither
more nor less capacity): only TPE's proposals change it. A default a rule cannot
bound (zero or negative where it multiplies, outside the library's range) leaves the
parameter as it is, and the bounds always take in the default, so the first attempt
(the project's defaults) lies inside the space. Anything else is left as it is.
`ct-service space PROJECT` prints the result.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ct_service.space import Dimension, Role, SearchSpace

Bounds = Callable[[float], tuple[float, float] | None]  # default -> (low, high), or None


@dataclass(frozen=True)
class Rule:
    """How parameters of some names are searched."""

    role: Role
    kind: str  # "int": whole defaults of parameters not declared float; "float": never int
    bounds: Bounds
    log: bool = False  # sampled on a log scale (the policy's own moves multiply anyway)
    any_declared_type: bool = False  # int even when declared float (epochs count anyway)
    whole_is_a_count: bool = False  # a whole default counts (max_features=1: one feature)


def _times(down: float, up: float, floor: float = 0.0, ceiling: float = math.inf) -> Bounds:
    """default / down .. default x up, within [floor, ceiling]; for a positive default
    in that range only."""

    def bounds(default: float) -> tuple[float, float] | None:
        if default <= 0 or not floor <= default <= ceiling:
            return None
        return max(floor, default / down), min(ceiling, default * up)

    return bounds


def _fraction(low: float, zero_allowed: bool = False) -> Bounds:
    """low .. 1, taking in a default below low; for a default in (0, 1] only, or in
    [0, 1] where the library takes 0 (l1_ratio 0 is ridge, subsample 0 is nothing)."""

    def bounds(default: float) -> tuple[float, float] | None:
        if not (0 < default <= 1 or (zero_allowed and default == 0)):
            return None
        return min(low, default), 1.0

    return bounds


def _epochs(default: float) -> tuple[float, float] | None:
    return (1, max(default * 8, default + 1)) if default >= 1 else None


def _depth(default: float) -> tuple[float, float] | None:
    return (1, default + 4) if default >= 1 else None


def _dropout(default: float) -> tuple[float, float] | None:
    return (0.0, max(0.9, default)) if 0 <= default < 1 else None


def _named(names: Iterable[str], rule: Rule) -> dict[str, Rule]:
    return dict.fromkeys((_key(name) for name in names), rule)


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


# Sampling fractions: XGBoost's subsample and colsample_* and LightGBM's
# feature_fraction and bagging_fraction take (0, 1] and default to 1 (all of it);
# XGBoost's docs give 0.5 (half the rows per tree) as the value that curbs
# over-fitting, and below half a small data set leaves trees too little to learn
# from, so 0.5 .. 1 (autoxgboost's default space uses the same). scikit-learn's
# max_features as a float is a share of the features, where random forests' usual
# sqrt(n) of 64 features is already 0.125: 0.1 .. 1.
RULES: dict[str, Rule] = {
    **_named(
        ("epochs", "n_epochs", "num_epochs", "max_epochs", "max_iter"),
        Rule(Role.EPOCHS, "int", _epochs, any_declared_type=True),
    ),
    **_named(
        ("learning_rate", "lr", "eta"),
        Rule(Role.LEARNING_RATE, "float", _times(100, 100, ceiling=1.0)),
    ),
    **_named(
        (
            *("alpha", "l1", "l2", "reg", "reg_alpha", "reg_lambda", "lambda"),
            *("lambda_l1", "lambda_l2", "weight_decay"),
            *("gamma", "min_split_loss", "min_split_gain", "min_child_weight"),
        ),
        Rule(Role.REGULARIZATION, "float", _times(100, 100), log=True),
    ),
    **_named(("dropout",), Rule(Role.REGULARIZATION, "float", _dropout)),
    **_named(
        ("min_samples_leaf", "min_child_samples", "min_data_in_leaf"),
        Rule(Role.REGULARIZATION, "int", _times(4, 20, floor=1), log=True),
    ),
    **_named(
        ("depth", "max_depth", "layers", "n_layers", "num_layers", "blocks", "conv_blocks"),
        Rule(Role.DEPTH, "int", _depth),
    ),
    **_named(
        (
            *("width", "units", "hidden_units", "hidden_size", "dense_units", "filters"),
            *("n_estimators", "num_boost_round", "num_iterations", "num_iteration"),
            *("num_round", "num_rounds", "nrounds", "num_trees", "num_tree"),
        ),
        Rule(Role.WIDTH, "int", _times(4, 8, floor=1)),
    ),
    **_named(("num_leaves",), Rule(Role.WIDTH, "int", _times(4, 8, floor=2))),  # LightGBM: > 1
    **_named(("c",), Rule(Role.OTHER, "float", _times(100, 100), log=True)),
    **_named(
        (
            *("subsample", "colsample_bytree", "colsample_bylevel", "colsample_bynode"),
            *("feature_fraction", "bagging_fraction"),
        ),
        Rule(Role.OTHER, "float", _fraction(0.5)),
    ),
    **_named(
        ("max_features", "max_samples"),
        Rule(Role.OTHER, "float", _fraction(0.1), whole_is_a_count=True),
    ),
}
SHARE = Rule(
    Role.OTHER, "float", _fraction(0.0, zero_allowed=True)
)  # any other *_ratio or *_fraction
SHARE_WORDS = {"ratio", "fraction"}
# A share of the data held out to measure the model, not a knob of the model:
# searching it would compare attempts measured on different data.
DATA_SPLIT_WORDS = {"val", "valid", "validation", "test", "train", "training", "holdout", "eval"}


def infer_space(parameters: Mapping[str, tuple[str, Any]]) -> SearchSpace:
    """The space for `parameters` (name -> (MLproject type, default)) by RULES."""
    dimensions = []
    for name, (declared_type, default) in parameters.items():
        rule = rule_for(name)
        number = _number(default)
        if rule is None or number is None or declared_type not in ("float", "int", "string"):
            continue
        dimension = _dimension(name, rule, number, declared_type)
        if dimension is not None:
            dimensions.append(dimension)
    return SearchSpace(tuple(dimensions))


def rule_for(name: str) -> Rule | None:
    """The rule for a parameter's name: by the whole name, else by its last word."""
    if _key(name) in RULES:
        return RULES[_key(name)]
    words = re.split(r"[_-]", name.lower())
    if words[-1] in SHARE_WORDS and not DATA_SPLIT_WORDS & set(words):
        return SHARE
    return None


def _dimension(name: str, rule: Rule, default: float, declared_type: str) -> Dimension | None:
    whole = default.is_integer() and declared_type != "float"
    if rule.kind == "int" and not (whole or rule.any_declared_type):
        return None
    if rule.kind == "float" and (declared_type == "int" or (rule.whole_is_a_count and whole)):
        return None  # a fraction cannot go into an int parameter
    bounds = rule.bounds(default)
    if bounds is None:
        return None
    low, high = bounds
    if rule.kind == "int":
        low, high = math.floor(low), math.ceil(high)
    return Dimension(name, rule.role, rule.kind, low, high, log=rule.log)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
