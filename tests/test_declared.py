"""What a project declares it needs, read as `mlflow run` reads it, and defensively:
the files come from a push."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ct_service.exceptions import ProjectError
from ct_service.execution.declared import (
    MAX_REQUIREMENTS,
    declared_environment,
    declared_requirements,
)

MLPROJECT = "name: p\nentry_points:\n  main:\n    command: python train.py\n"


def project(tmp_path: Path, files: dict[str, str | bytes], mlproject_extra: str = "") -> Path:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "MLproject").write_text(MLPROJECT + mlproject_extra)
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            (folder / name).write_text(content)
    return folder


@pytest.mark.unit
@pytest.mark.parametrize(
    ("mlproject_extra", "files", "expected"),
    [
        (
            "python_env: env/python.yaml\n",
            {"env/python.yaml": "{}", "conda.yaml": "{}"},
            ("python_env", "env/python.yaml"),
        ),
        ("conda_env: my_env.yaml\n", {"my_env.yaml": "{}"}, ("conda", "my_env.yaml")),
        ("", {"python_env.yaml": "{}", "conda.yaml": "{}"}, ("python_env", "python_env.yaml")),
        ("", {"conda.yaml": "{}"}, ("conda", "conda.yaml")),
        ("docker_env:\n  image: x\n", {"python_env.yaml": "{}"}, ("", "")),
        ("", {"requirements.txt": "numpy\n"}, ("", "")),  # MLflow builds no env from it
    ],
)
def test_the_declared_environment_is_read_as_mlflow_reads_it(
    tmp_path: Path, mlproject_extra: str, files: dict[str, str | bytes], expected: tuple[str, str]
) -> None:
    declared = declared_environment(project(tmp_path, files, mlproject_extra))
    assert (declared.kind, declared.file) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    ("files", "lines", "python"),
    [
        (
            {
                "python_env.yaml": "python: '3.11'\ndependencies: [numpy, '-r sub/a.txt']\n",
                # -r is read relative to the file that names it, as pip reads it
                "sub/a.txt": "-r b.txt\npandas\n",
                "sub/b.txt": "scipy  # solvers\n",
            },
            ("numpy", "scipy", "pandas"),
            "3.11",
        ),
        (  # an include read twice (or including itself) is read once
            {
                "requirements.txt": "-r requirements.txt\n-r more.txt\n-r more.txt\nnumpy\n",
                "more.txt": "pandas\n",
            },
            ("pandas", "numpy"),
            "",
        ),
        (  # pip-compile's output: continuation lines and hashes
            {
                "requirements.txt": "numpy==2.1.0 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n"
            },
            ("numpy==2.1.0 --hash=sha256:aa --hash=sha256:bb",),
            "",
        ),
        (
            {"conda.yaml": "dependencies:\n  - python=3.10\n  - pip\n  - pip: [xgboost]\n"},
            ("xgboost",),
            "3.10",
        ),
        (
            {"requirements.txt": "torch[cpu]>=2; sys_platform == 'linux'\n"},
            ("torch[cpu]>=2; sys_platform == 'linux'",),
            "",
        ),
    ],
)
def test_requirements_are_read_as_pip_reads_them(
    tmp_path: Path, files: dict[str, str | bytes], lines: tuple[str, ...], python: str
) -> None:
    found = declared_requirements(project(tmp_path, files))
    assert found is not None
    assert (found.lines, found.python) == (lines, python)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"requirements.txt": "--index-url https://evil.example/simple\ntorch\n"},
            "pip option '--index-url' is not accepted",
        ),
        ({"requirements.txt": "-r ../../etc/passwd\n"}, "names no file of the project"),
        (
            {"python_env.yaml": "dependencies: ['x @ https://evil.example/x.whl']\n"},
            "x installs from a URL, which a declared environment does not",
        ),
        ({"requirements.txt": "git+https://evil.example/x.git\n"}, "is not a requirement"),
        ({"requirements.txt": "/etc/some-local-package\n"}, "is not a requirement"),
        ({"requirements.txt": "numpy --no-binary=:all:\n"}, "only --hash options are accepted"),
        ({"python_env.yaml": "- a list\n"}, "python_env.yaml must hold a mapping"),
        ({"python_env.yaml": "dependencies: numpy\n"}, "dependencies must be a list"),
        ({"python_env.yaml": "dependencies: [3]\n"}, "dependencies must be a list"),
        ({"python_env.yaml": "build_dependencies: true\n"}, "build_dependencies must be a list"),
        ({"python_env.yaml": b"dependencies: [caf\xe9]\n"}, "cannot be read"),
        ({"conda.yaml": "dependencies:\n  - pip: numpy\n"}, "pip must be a list"),
    ],
)
def test_what_a_declaration_must_not_say_is_refused_naming_the_file(
    tmp_path: Path, files: dict[str, str | bytes], message: str
) -> None:
    with pytest.raises(ProjectError, match=re.escape(message)):
        declared_requirements(project(tmp_path, files))


@pytest.mark.unit
@pytest.mark.parametrize("target", ["/etc/hostname", "/proc/self/environ"])
def test_a_requirements_file_linked_outside_the_project_is_never_read(
    tmp_path: Path, target: str
) -> None:
    folder = project(tmp_path, {})
    os.symlink(target, folder / "requirements.txt")
    with pytest.raises(ProjectError) as raised:
        declared_requirements(folder)
    assert str(raised.value) == "p: requirements.txt: names no file of the project"


@pytest.mark.unit
def test_includes_cannot_multiply_without_bound(tmp_path: Path) -> None:
    """Six files of twelve `-r next` lines each would be three million requirements."""
    files = {f"r{i}.txt": f"-r r{i + 1}.txt\n" * 12 for i in range(6)}
    files["r6.txt"] = "".join(f"package{n}\n" for n in range(MAX_REQUIREMENTS + 1))
    files["requirements.txt"] = "-r r0.txt\n"
    with pytest.raises(ProjectError, match=f"more than {MAX_REQUIREMENTS} requirements"):
        declared_requirements(project(tmp_path, files))
