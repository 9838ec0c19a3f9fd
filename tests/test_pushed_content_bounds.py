"""A push cannot exhaust the worker that reads it (issue 29, finding 4): links are
checked before any read, every read of a pushed file is bounded, the MLproject
command is filled in without the push's format specs, and YAML aliases cannot
expand without bound.

The attacks run in a child process with a memory and CPU cap, so that the
behaviour before the fix (MemoryError, or minutes of CPU) shows as a failed
test instead of taking the machine down."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ct_env

MEMORY_CAP = 1024**3  # bytes of address space the attacked process may use
CPU_CAP = 20  # CPU seconds it may use
REFUSED = 3  # the child's exit code when the attack is refused with a ProjectError

CHILD = """
import json, sys
from pathlib import Path
from ct_service.exceptions import ProjectError
project = Path(sys.argv[1])
try:
{action}
except ProjectError as error:
    print(error)
    sys.exit({refused})
print("accepted")
"""


def attacked(project: Path, action: str) -> subprocess.CompletedProcess[str]:
    """Run `action` (code using `project`) in a child capped at MEMORY_CAP bytes and
    CPU_CAP seconds; its output and exit code."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
        resource.setrlimit(resource.RLIMIT_CPU, (CPU_CAP, CPU_CAP))

    code = CHILD.format(action=textwrap.indent(action, "    "), refused=REFUSED)
    return subprocess.run(
        [sys.executable, "-c", code, str(project)],
        env=ct_env(),
        preexec_fn=cap,
        capture_output=True,
        text=True,
        timeout=120,
    )


def mlproject(folder: Path, parameters: str, command: str = "python train.py {lr}") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "MLproject").write_text(
        "name: p\nentry_points:\n  main:\n    parameters:\n"
        + textwrap.indent(textwrap.dedent(parameters), "      ")
        + f"    command: {command!r}\n"
    )
    return folder


# -- the three inputs of the finding ------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    "action",
    [
        "from ct_service.execution.environment import choose\nchoose(project)",
        "from ct_service.execution.spares import modules_to_preload\nmodules_to_preload(project)",
    ],
    ids=["import scan", "spare's import scan"],
)
def test_a_python_file_linked_to_dev_zero_is_refused_before_it_is_read(
    tmp_path: Path, action: str
) -> None:
    project = mlproject(tmp_path / "p", "lr: {type: float, default: 0.1}\n")
    (project / "train.py").write_text("import tensorflow\n")
    (project / "evil.py").symlink_to("/dev/zero")
    done = attacked(project, action)
    assert done.returncode == REFUSED, done.stderr[-2000:]
    assert done.stdout.strip() == (
        "p/evil.py is a symlink to /dev/zero, outside the project; "
        "pushed links may only point inside it"
    )


@pytest.mark.integration
def test_a_format_spec_in_the_command_is_refused_not_expanded(tmp_path: Path) -> None:
    project = mlproject(
        tmp_path / "p", "lr: {type: float, default: 0.1}\n", "python train.py {lr:>1000000000}"
    )
    done = attacked(
        project,
        "from ct_service.project import load_project\nload_project(project).command_line({})",
    )
    assert done.returncode == REFUSED, done.stderr[-2000:]
    assert done.stdout.strip() == (
        f"{project / 'MLproject'}: its command has the field {{lr:>1000000000}}; only plain "
        "{name} fields naming a parameter are filled in (no format specs, conversions or "
        "indexes)"
    )


ALIAS_BOMB = """\
name: p
entry_points:
  main:
    parameters:
      lr: {type: float, default: 0.1}
      notes:
        type: string
        default: [&a [lol, lol, lol, lol, lol, lol, lol, lol, lol],
          &b [*a, *a, *a, *a, *a, *a, *a, *a, *a], &c [*b, *b, *b, *b, *b, *b, *b, *b, *b],
          &d [*c, *c, *c, *c, *c, *c, *c, *c, *c], &e [*d, *d, *d, *d, *d, *d, *d, *d, *d],
          &f [*e, *e, *e, *e, *e, *e, *e, *e, *e], &g [*f, *f, *f, *f, *f, *f, *f, *f, *f],
          &h [*g, *g, *g, *g, *g, *g, *g, *g, *g], &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]]
    command: python train.py {lr}
"""


@pytest.mark.integration
def test_a_yaml_alias_bomb_as_a_parameter_default_is_refused_unexpanded(tmp_path: Path) -> None:
    """What the start step does with a project: load it, its first configuration
    as JSON (the ct.initial_config tag), its command."""
    project = tmp_path / "p"
    project.mkdir()
    (project / "MLproject").write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 700
    done = attacked(
        project,
        "from ct_service.project import load_project\n"
        "loaded = load_project(project)\n"
        "json.dumps(loaded.initial_config())\n"
        "loaded.command_line({})",
    )
    assert done.returncode == REFUSED, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == (
        "p/MLproject: its YAML aliases expand to more than 100,000 nodes; it is not read"
    )
