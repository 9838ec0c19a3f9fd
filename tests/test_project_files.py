"""The bounded reader of a project's files (project_files.py) and the command
template: what the bounds keep working as before, and what else they refuse. The
attacks of issue 29's finding 4 are in test_pushed_content_bounds.py."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

from ct_service.exceptions import ProjectError
from ct_service.execution.environment import choose
from ct_service.project import MAX_COMMAND_BYTES, command_fields, load_project
from ct_service.project_files import (
    MAX_FILE_BYTES,
    parse_yaml,
    python_files,
    read_bytes,
    read_yaml,
)


def mlproject(folder: Path, parameters: str, command: str = "python train.py {lr}") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "MLproject").write_text(
        "name: p\nentry_points:\n  main:\n    parameters:\n"
        + textwrap.indent(textwrap.dedent(parameters), "      ")
        + f"    command: {command!r}\n"
    )
    return folder


@pytest.mark.unit
@pytest.mark.parametrize(
    ("command", "refused"),
    [
        ("python train.py {lr}", ""),
        ("python train.py --lr {lr} {{literal}}", ""),
        ("python train.py {lr:>10}", "the field {lr:>10}"),
        ("python train.py {lr!r}", "the field {lr!r}"),
        ("python train.py {lr.__class__}", "the field {lr.__class__}"),
        ("python train.py {lr[0]}", "the field {lr[0]}"),
        ("python train.py {}", "the field {}"),
        ("python train.py {0}", "the field {0}"),
        ("python train.py {lr", "is not a valid template"),
    ],
)
def test_only_plain_fields_are_filled_in(command: str, refused: str) -> None:
    if refused:
        with pytest.raises(ProjectError, match=rf"^MLproject: its command .*{re.escape(refused)}"):
            command_fields(command, "MLproject")
    else:
        assert [f for _, f in command_fields(command, "MLproject") if f] in (["lr"], [])


@pytest.mark.unit
def test_the_command_is_filled_in_as_mlflow_fills_it(tmp_path: Path) -> None:
    project = load_project(
        mlproject(
            tmp_path / "p",
            "lr: {type: float, default: 0.1}\nname: {type: string, default: a b}\n",
            "python train.py --lr {lr} --name {name} {{x}}",
        )
    )
    assert project.command_line({"lr": "0.5", "extra; rm": "1"}) == (
        "python train.py --lr 0.5 --name 'a b' {x} --'extra; rm' 1"
    )


@pytest.mark.unit
def test_a_field_that_names_no_parameter_is_refused_when_the_project_is_read(
    tmp_path: Path,
) -> None:
    folder = mlproject(tmp_path / "p", "lr: {type: float, default: 0.1}\n", "python t.py {rate}")
    with pytest.raises(ProjectError, match=r"command names \{rate\}, which is not one of"):
        load_project(folder)


@pytest.mark.unit
def test_a_command_longer_than_a_shell_argument_once_filled_is_refused(tmp_path: Path) -> None:
    """A default of 100 kB used twice: each part is within bounds, the whole is not."""
    folder = mlproject(
        tmp_path / "p", f"text: {{type: string, default: {'x' * 100_000}}}\n", "echo {text}{text}"
    )
    with pytest.raises(ProjectError, match=f"longer than {MAX_COMMAND_BYTES:,} characters"):
        load_project(folder).command_line({})


@pytest.mark.unit
def test_yaml_aliases_within_the_bound_are_read_as_yaml_reads_them() -> None:
    text = "base: &base {type: float, default: 0.1}\nlr: {<<: *base, default: 0.2}\nsame: *base\n"
    assert parse_yaml(text, "MLproject") == {
        "base": {"type": "float", "default": 0.1},
        "lr": {"type": "float", "default": 0.2},
        "same": {"type": "float", "default": 0.1},
    }


@pytest.mark.unit
def test_a_yaml_alias_inside_itself_is_refused() -> None:
    with pytest.raises(ProjectError, match="a YAML alias refers to the node that holds it"):
        parse_yaml("a: &loop [1, *loop]\n", "ct.yaml")


@pytest.mark.unit
def test_deeply_nested_yaml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="p/ct.yaml: YAML nested too deeply"):
        (tmp_path / "p").mkdir()
        (tmp_path / "p" / "ct.yaml").write_text("[" * 100_000)
        read_yaml(tmp_path / "p", tmp_path / "p" / "ct.yaml")


@pytest.mark.unit
def test_a_file_over_the_limit_is_refused_naming_file_and_limit(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "ct.yaml").write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(ProjectError) as raised:
        read_bytes(project, project / "ct.yaml")
    assert str(raised.value) == f"p/ct.yaml is larger than {MAX_FILE_BYTES:,} bytes; it is not read"


@pytest.mark.unit
def test_a_fifo_in_the_project_is_refused_without_blocking(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    os.mkfifo(project / "train.py")
    with pytest.raises(ProjectError, match="p/train.py is not a regular file"):
        read_bytes(project, project / "train.py")


@pytest.mark.unit
def test_links_inside_the_project_are_read(tmp_path: Path) -> None:
    project = mlproject(tmp_path / "p", "lr: {type: float, default: 0.1}\n")
    (project / "src").mkdir()
    (project / "src" / "model.py").write_text("import torch\n")
    (project / "train.py").symlink_to("src/model.py")
    assert read_bytes(project, project / "train.py") == b"import torch\n"
    with pytest.raises(ProjectError, match="uses pytorch"):  # read through the link
        choose(project)


@pytest.mark.unit
def test_the_import_scan_does_not_follow_a_folder_linked_out_of_the_project(
    tmp_path: Path,
) -> None:
    """A link to / would have the scan walk the whole machine."""
    project = tmp_path / "p"
    project.mkdir()
    (project / "train.py").write_text("import sklearn\n")
    (project / "root").symlink_to("/")
    (project / ".venv").mkdir()
    (project / ".venv" / "site.py").write_text("import torch\n")
    assert python_files(project) == [project / "train.py"]
