"""The search space inferred from an MLproject's typed parameters (no ct.yaml), and
how ct.yaml reads it back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ct_service.cli import main
from ct_service.sampler import distributions
from ct_service.space import Role, SearchSpace
from ct_service.space_inference import infer_space

REG, OTHER, WIDTH = Role.REGULARIZATION, Role.OTHER, Role.WIDTH


@pytest.mark.unit
@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        (  # MLflow's wine example: ElasticNet, its two main knobs
            {"alpha": ("float", 0.5), "l1_ratio": ("float", 0.1), "data": ("path", "wine.csv")},
            {
                "alpha": (REG, "float", 0.005, 50.0, True),
                "l1_ratio": (OTHER, "float", 0.0, 1.0, False),
            },
        ),
        (  # a scikit-learn gradient-boosting project
            {
                "n_estimators": ("int", 100),
                "learning_rate": ("float", 0.1),
                "max_depth": ("int", 3),
                "subsample": ("float", 0.8),
                "max_features": ("float", 0.5),  # a share of the features
                "min_samples_leaf": ("int", 1),
                "validation_fraction": ("float", 0.1),  # how it measures itself: left alone
            },
            {
                "n_estimators": (WIDTH, "int", 25, 800, False),
                "learning_rate": (Role.LEARNING_RATE, "float", 0.001, 1.0, False),
                "max_depth": (Role.DEPTH, "int", 1, 7, False),
                "subsample": (OTHER, "float", 0.5, 1.0, False),
                "max_features": (OTHER, "float", 0.1, 1.0, False),
                "min_samples_leaf": (REG, "int", 1, 20, True),
            },
        ),
        (  # XGBoost's native parameters with its defaults
            {
                "num_boost_round": ("int", 10),
                "eta": ("float", 0.3),
                "colsample_bytree": ("float", 1.0),
                "colsample_bylevel": ("float", 0.3),  # below 0.5: the space takes it in
                "min_child_weight": ("float", 1.0),
                "reg_lambda": ("float", 1.0),
                "reg_alpha": ("float", 0.0),  # no scale to multiply: left as it is
                "gamma": ("float", 0.0),
            },
            {
                "num_boost_round": (WIDTH, "int", 2, 80, False),
                "eta": (Role.LEARNING_RATE, "float", 0.003, 1.0, False),
                "colsample_bytree": (OTHER, "float", 0.5, 1.0, False),
                "colsample_bylevel": (OTHER, "float", 0.3, 1.0, False),
                "min_child_weight": (REG, "float", 0.01, 100.0, True),
                "reg_lambda": (REG, "float", 0.01, 100.0, True),
            },
        ),
        (  # LightGBM's names
            {
                "num_iterations": ("int", 100),
                "num_leaves": ("int", 31),
                "max_depth": ("int", -1),  # no limit: left as it is
                "feature_fraction": ("float", 0.9),
                "bagging_fraction": ("float", 1.0),
                "lambda_l1": ("float", 0.0),
                "lambda_l2": ("float", 0.1),
                "min_data_in_leaf": ("int", 20),
                "min_split_gain": ("float", 0.5),
            },
            {
                "num_iterations": (WIDTH, "int", 25, 800, False),
                "num_leaves": (WIDTH, "int", 7, 248, False),
                "feature_fraction": (OTHER, "float", 0.5, 1.0, False),
                "bagging_fraction": (OTHER, "float", 0.5, 1.0, False),
                "lambda_l2": (REG, "float", 0.001, 10.0, True),
                "min_data_in_leaf": (REG, "int", 5, 400, True),
                "min_split_gain": (REG, "float", 0.005, 50.0, True),
            },
        ),
        (  # a support-vector or logistic-regression project: C, the inverse penalty
            {"C": ("float", 1.0), "sample_ratio": ("string", "0.25"), "num_leaves": ("int", 2)},
            {
                "C": (OTHER, "float", 0.01, 100.0, True),
                "sample_ratio": (OTHER, "float", 0.0, 1.0, False),
                "num_leaves": (WIDTH, "int", 2, 16, False),  # LightGBM needs more than 1
            },
        ),
        (  # defaults outside a rule's range, and names that only look like a share
            {
                "subsample": ("float", 0.0),
                "l1_ratio": ("float", 1.5),
                "max_features": ("int", 10),  # a count of features
                "max_samples": ("string", "1"),  # one sample, not all of them
                "test_ratio": ("float", 0.2),
                "train-fraction": ("float", 0.8),
                "duration": ("float", 0.5),
                "dropout": ("float", 0.95),  # above 0.9: the space takes it in
            },
            {"dropout": (REG, "float", 0.0, 0.95, False)},
        ),
        (  # a Keras-like project, untyped (string) parameters with numeric defaults
            {"epochs": ("string", "3"), "lr": ("string", "0.001"), "dropout": ("float", 0.2)},
            {
                "epochs": (Role.EPOCHS, "int", 1, 24, False),
                "lr": (Role.LEARNING_RATE, "float", 0.00001, 0.1, False),
                "dropout": (REG, "float", 0.0, 0.9, False),
            },
        ),
        ({"alpha": ("int", 3), "l1_ratio": ("int", 0)}, {}),  # a fraction cannot go in an int
        ({"alpha": ("float", None), "epochs": ("string", "many")}, {}),  # no numeric default
        ({"seed": ("int", 42), "batch_size": ("int", 64)}, {}),  # no role by name
    ],
)
def test_roles_and_ranges_are_read_off_parameter_names(parameters, expected) -> None:
    space = infer_space(parameters)
    found = {d.name: (d.role, d.kind, d.low, d.high, d.log) for d in space.dimensions}
    assert found.keys() == expected.keys()
    for name, (role, kind, low, high, log) in expected.items():
        assert (found[name][:2], found[name][4]) == ((role, kind), log), name
        assert found[name][2] == pytest.approx(low) and found[name][3] == pytest.approx(high)
    defaults = {name: default for name, (_, default) in parameters.items() if name in found}
    assert space.outside(defaults) == []  # the first attempt, the defaults, lies inside


@pytest.mark.unit
def test_a_space_printed_as_ct_yaml_reads_back_the_same() -> None:
    space = infer_space(
        {"n_estimators": ("int", 100), "alpha": ("float", 0.5), "l1_ratio": ("float", 0.1)}
    )
    declared = SearchSpace.from_spec(
        {"filters": {"role": "width", "type": "int", "values": [4, 8, 16]}}
    )
    for original in (space, declared):
        assert SearchSpace.from_spec(original.to_spec()) == original
    assert space.to_spec()["alpha"] == {
        "role": "regularization",
        "type": "float",
        "low": 0.005,
        "high": 50.0,
        "log": True,
    }
    assert space.to_spec()["l1_ratio"] == {
        "role": "other",
        "type": "float",
        "low": 0.0,
        "high": 1.0,
    }


@pytest.mark.unit
def test_the_sampler_searches_a_log_dimension_on_a_log_scale_and_a_share_linearly() -> None:
    space = infer_space(
        {"alpha": ("float", 0.5), "l1_ratio": ("float", 0.1), "min_samples_leaf": ("int", 1)}
    )
    found = distributions(space)
    assert found["alpha"].log and found["min_samples_leaf"].log
    assert not found["l1_ratio"].log
    assert (found["l1_ratio"].low, found["l1_ratio"].high) == (0.0, 1.0)


WINE_MLPROJECT = """name: wine
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
      l1_ratio: {type: float, default: 0.1}
    command: "python train.py {alpha} {l1_ratio}"
"""  # MLflow's examples/sklearn_elasticnet_wine, as its authors ship it


@pytest.mark.integration
def test_space_shows_both_knobs_of_mlflows_wine_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "MLproject").write_text(WINE_MLPROJECT)
    assert main(["space", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("# search space of wine: inferred from its MLproject")
    assert "alpha: {role: regularization, type: float, low: 0.005, high: 50.0, log: true}" in shown
    assert "l1_ratio: {role: other, type: float, low: 0.0, high: 1.0}" in shown
    assert main(["space", str(tmp_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["inferred"] is True
    assert printed["search_space"]["l1_ratio"] == {
        "role": "other",
        "type": "float",
        "low": 0.0,
        "high": 1.0,
    }
