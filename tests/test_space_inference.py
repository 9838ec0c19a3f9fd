"""The search space inferred from an MLproject's typed parameters (no ct.yaml), and
how ct.yaml reads it back."""

from __future__ import annotations

import pytest

from ct_service.space import Role, SearchSpace
from ct_service.space_inference import infer_space


@pytest.mark.unit
@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        (  # MLflow's wine example: ElasticNet
            {"alpha": ("float", 0.5), "l1_ratio": ("float", 0.1), "data": ("path", "wine.csv")},
            {"alpha": (Role.REGULARIZATION, "float", 0.005, 50.0)},
        ),
        (  # a gradient-boosting project
            {
                "n_estimators": ("int", 100),
                "learning_rate": ("float", 0.1),
                "max_depth": ("int", 3),
            },
            {
                "n_estimators": (Role.WIDTH, "int", 25, 800),
                "learning_rate": (Role.LEARNING_RATE, "float", 0.001, 1.0),
                "max_depth": (Role.DEPTH, "int", 1, 7),
            },
        ),
        (  # a Keras-like project, untyped (string) parameters with numeric defaults
            {"epochs": ("string", "3"), "lr": ("string", "0.001"), "dropout": ("float", 0.2)},
            {
                "epochs": (Role.EPOCHS, "int", 1, 24),
                "lr": (Role.LEARNING_RATE, "float", 0.00001, 0.1),
                "dropout": (Role.REGULARIZATION, "float", 0.0, 0.9),
            },
        ),
        ({"alpha": ("int", 3)}, {}),  # a fraction cannot go into an int parameter
        ({"alpha": ("float", None), "epochs": ("string", "many")}, {}),  # no numeric default
        ({"seed": ("int", 42), "batch_size": ("int", 64)}, {}),  # no role by name
    ],
)
def test_roles_and_ranges_are_read_off_parameter_names(parameters, expected) -> None:
    space = infer_space(parameters)
    found = {d.name: (d.role, d.kind, d.low, d.high) for d in space.dimensions}
    assert found.keys() == expected.keys()
    for name, (role, kind, low, high) in expected.items():
        assert found[name][:2] == (role, kind)
        assert found[name][2] == pytest.approx(low) and found[name][3] == pytest.approx(high)


@pytest.mark.unit
def test_a_space_printed_as_ct_yaml_reads_back_the_same() -> None:
    space = infer_space({"n_estimators": ("int", 100), "alpha": ("float", 0.5)})
    declared = SearchSpace.from_spec(
        {"filters": {"role": "width", "type": "int", "values": [4, 8, 16]}}
    )
    for original in (space, declared):
        assert SearchSpace.from_spec(original.to_spec()) == original
