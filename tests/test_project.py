"""How ct-service reads an MLflow project's parameters (short and long forms, as
MLflow reads them) and how it sends their values back (losslessly)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ct_service.exceptions import ProjectError
from ct_service.project import Parameter, load_project
from ct_service.space import param_text
from ct_service.target import Direction, Target


def project(tmp_path: Path, parameters: str, ct_yaml: str = "") -> Path:
    (tmp_path / "MLproject").write_text(
        "name: wine\nentry_points:\n  main:\n    parameters:\n"
        + textwrap.indent(textwrap.dedent(parameters), "      ")
        + "    command: python train.py\n"
    )
    if ct_yaml:
        (tmp_path / "ct.yaml").write_text(textwrap.dedent(ct_yaml))
    return tmp_path


@pytest.mark.unit
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("alpha: float", Parameter("float", None)),
        ("alpha: int", Parameter("int", None)),
        ("alpha: string", Parameter("string", None)),
        ("alpha: path", Parameter("path", None)),
        ("alpha: uri", Parameter("uri", None)),
        ("alpha: {type: float}", Parameter("float", None)),
        ("alpha: {type: float, default: 0.5}", Parameter("float", 0.5)),
        ("alpha: {type: int, default: 3}", Parameter("int", 3)),
        ("alpha: {default: x}", Parameter("string", "x")),
        ("alpha: {type: path, default: data}", Parameter("path", "data")),
    ],
)
def test_short_and_long_forms_are_read_as_mlflow_reads_them(
    tmp_path: Path, spec: str, expected: Parameter
) -> None:
    assert load_project(project(tmp_path, spec + "\n")).parameters["alpha"] == expected


@pytest.mark.unit
def test_a_required_parameter_must_be_given_and_is_not_its_type_name(tmp_path: Path) -> None:
    loaded = load_project(
        project(tmp_path, "alpha: float\nl1_ratio: {type: float, default: 0.1}\n")
    )
    with pytest.raises(
        ProjectError,
        match=r"required parameter\(s\) without a value: alpha \(give -P alpha=\.\.\.\)",
    ):
        loaded.initial_config()
    assert loaded.initial_config({"alpha": "0.7"}) == {"alpha": "0.7", "l1_ratio": 0.1}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("alpha: number\n", "alpha has type 'number'; MLflow knows string, float, int, path, uri"),
        ("alpha: [1, 2]\n", "parameter alpha must be a type or a mapping"),
    ],
)
def test_unknown_types_are_refused_with_the_parameter_named(
    tmp_path: Path, spec: str, message: str
) -> None:
    with pytest.raises(ProjectError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_project(project(tmp_path, spec))


@pytest.mark.unit
def test_a_search_dimension_must_match_the_declared_type(tmp_path: Path) -> None:
    folder = project(
        tmp_path,
        "epochs: {type: int, default: 2}\n",
        "search_space:\n  epochs: {role: epochs, type: float, low: 1, high: 10}\n",
    )
    with pytest.raises(
        ProjectError, match="epochs is searched as float, but the MLproject declares it int"
    ):
        load_project(folder)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1.0"),  # `:g` sent "1": a project logging float(alpha) then clashed with MLflow
        (0.0001234567, "0.0001234567"),
        (1e-05, "1e-05"),
        (0.1, "0.1"),
        (123456789.125, "123456789.125"),
        (3, "3"),
        ("0.50", "0.50"),  # given on the command line: sent as given
        ("data/wine.csv", "data/wine.csv"),
    ],
)
def test_values_are_sent_losslessly(value: object, text: str) -> None:
    assert param_text(value) == text
    if isinstance(value, float):
        assert float(text) == value


@pytest.mark.unit
def test_ct_yaml_may_declare_the_target_and_still_have_its_space_inferred(
    tmp_path: Path,
) -> None:
    loaded = load_project(
        project(
            tmp_path,
            "alpha: {type: float, default: 0.5}\n",
            "target: {metric: rmse, threshold: 0.7, direction: minimize}\n",
        )
    )
    assert loaded.target == Target("rmse", 0.7, Direction.MINIMIZE)
    assert loaded.space_inferred and [d.name for d in loaded.space.dimensions] == ["alpha"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("ct_yaml", "message"),
    [
        ("targets: {}\n", "unknown key(s) targets; known: search_space, stop_early, target"),
        ("target: 0.9\n", "target: must be a mapping of metric, threshold, direction"),
        ("target: {threshold: high}\n", "target: threshold must be a number, got 'high'"),
        ("target: {threshold: .nan}\n", "target threshold must be a finite number"),
        ("target: {direction: up}\n", "target: direction must be maximize or minimize, got 'up'"),
        ("target: {metric: [a]}\n", "target: metric must be a metric name"),
        ("target: {value: 3}\n", "target: unknown key(s) value"),
        ("target: {direction: [maximize]}\n", "target: direction must be maximize or minimize"),
        (f"target: {{threshold: {'9' * 400}}}\n", "target: threshold 999"),
    ],
)
def test_a_bad_target_in_ct_yaml_names_the_file_and_the_key(
    tmp_path: Path, ct_yaml: str, message: str
) -> None:
    with pytest.raises(ProjectError) as raised:
        load_project(project(tmp_path, "alpha: {type: float, default: 0.5}\n", ct_yaml))
    assert str(raised.value).startswith(f"{tmp_path / 'ct.yaml'}: ")
    assert message in str(raised.value)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("dimension", "message"),
    [
        (
            "alpha: {role: colour, low: 0, high: 1}",
            "search_space.alpha.role must be one of depth, width",
        ),
        ("alpha: {low: 0, high: 1}", "search_space.alpha.role must be one of"),
        (
            "alpha: {role: regularization, low: 2, high: 1}",
            "search_space.alpha: needs low <= high (got low 2, high 1)",
        ),
        (
            "alpha: {role: regularization, low: small, high: 1}",
            "search_space.alpha.low must be a number, got 'small'",
        ),
        (
            "alpha: {role: regularization, low: 0, high: [1]}",
            "search_space.alpha.high must be a number, got [1]",
        ),
        (
            "alpha: {role: regularization, low: 0, high: true}",
            "search_space.alpha.high must be a number, got True",
        ),
        (
            "alpha: {role: regularization, values: [0.1, lots]}",
            "search_space.alpha.values must be a number, got 'lots'",
        ),
        (
            "alpha: {role: regularization, values: 0.1}",
            "search_space.alpha.values must be a list, got 0.1",
        ),
        ("alpha: 0.5", "search_space.alpha must be a mapping like"),
        (
            "alpha: {role: regularization, low: 0, high: 1, log: true}",
            "search_space.alpha: a log scale needs low > 0 (an int's at least 1), got 0",
        ),
        (
            "alpha: {role: regularization, low: 0.1, high: 1, log: yes please}",
            "search_space.alpha.log must be true or false, got 'yes please'",
        ),
        (
            "alpha: {role: regularization, type: double, low: 0, high: 1}",
            "search_space.alpha.type must be int or float, got 'double'",
        ),
        (
            "beta: {role: regularization, low: 0, high: 1}",
            "not parameters of the MLproject: beta",
        ),
    ],
)
def test_a_bad_search_space_in_ct_yaml_names_the_file_and_the_key(
    tmp_path: Path, dimension: str, message: str
) -> None:
    with pytest.raises(ProjectError) as raised:
        load_project(
            project(
                tmp_path,
                "alpha: {type: float, default: 0.5}\n",
                f"search_space:\n  {dimension}\n",
            )
        )
    assert str(raised.value).startswith(f"{tmp_path / 'ct.yaml'}: ")
    assert message in str(raised.value)
