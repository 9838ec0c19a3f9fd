"""Warm launchers (spares.py, warm_launcher.py): which commands run in one, which
modules a spare imports, and that an attempt run in a spare sees what `python
script.py` would see, its libraries already imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import mlflow
import pytest

from ct_service.execution.executor import AttemptRequest
from ct_service.execution.local import LocalExecutor
from ct_service.execution.spares import SPARES, modules_to_preload, script_argv, spawn, warm_up
from ct_service.settings import Settings

OURS = {"PATH": os.path.dirname(sys.executable)}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("python train.py --epochs 2", ["train.py", "--epochs", "2"]),
        ("python3 src/train.py 'a b' '' 3", ["src/train.py", "a b", "", "3"]),
        ("python train.py --data $HOME/data", None),  # bash expands it
        ("python train.py && echo done", None),
        ("python train.py > out.txt", None),
        ("python -m trainer --epochs 2", None),
        ("python -u train.py", None),
        ("bash run.sh", None),
        ("python train.py 'unclosed", None),
    ],
)
def test_only_a_plain_python_script_of_this_environment_runs_warm(
    command: str, argv: list[str] | None
) -> None:
    assert script_argv(command, OURS) == argv


@pytest.mark.unit
def test_a_python_of_another_environment_runs_cold(tmp_path: Path) -> None:
    other = tmp_path / "bin"
    other.mkdir()
    (other / "python").symlink_to(sys.executable)  # the same interpreter, another venv
    assert script_argv("python train.py", {"PATH": str(other)}) is None
    assert script_argv("python train.py", {"PATH": ""}) is None


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))
    return folder


@pytest.mark.unit
def test_a_spare_preloads_the_libraries_the_project_imports_not_its_own_modules(
    tmp_path: Path,
) -> None:
    project = write(
        tmp_path,
        {
            "train.py": """
                from __future__ import annotations
                import json, os
                import numpy as np
                import yaml.constructor
                from mlflow.models import infer_signature
                import network
                from data import loader
                from . import sibling
            """,
            "network.py": "def build():\n    import keras\n",
            "data/loader.py": "import pandas\n",
            "broken.py": "def (:\n",
            ".hidden/tool.py": "import requests\n",
        },
    )
    assert modules_to_preload(project) == ("keras", "mlflow", "numpy", "pandas", "yaml")


@pytest.mark.unit
@pytest.mark.parametrize(
    "line",
    [
        "os.environ['KERAS_BACKEND'] = 'jax'",
        "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')",
        "os.environ.update(CUDA_VISIBLE_DEVICES='')",
        "os.putenv('OMP_NUM_THREADS', '1')",
        "environ['KERAS_BACKEND'] = 'jax'",
    ],
)
def test_a_project_that_sets_environment_variables_gets_nothing_preloaded(
    tmp_path: Path, line: str
) -> None:
    """A library may read them as it is imported (Keras reads KERAS_BACKEND)."""
    project = write(
        tmp_path, {"train.py": f"import os\nfrom os import environ\n{line}\nimport keras\n"}
    )
    assert modules_to_preload(project) == ()


@pytest.mark.unit
def test_reading_the_environment_still_preloads(tmp_path: Path) -> None:
    project = write(tmp_path, {"train.py": "import os\nimport keras\nos.environ.get('X')\n"})
    assert modules_to_preload(project) == ("keras",)


# What the script reports: what it found imported before its own first import, and
# everything `python job.py` would have shown it.
REPORT = """
    import sys
    preloaded = "yaml" in sys.modules
    import json, os
    import yaml
    import helper
    print(json.dumps({
        "preloaded": preloaded, "pid": os.getpid(), "name": __name__, "file": __file__,
        "argv": sys.argv, "path0": sys.path[0], "cwd": os.getcwd(),
        "run": os.environ["MLFLOW_RUN_ID"], "secrets": [k for k in os.environ if k.startswith("CT_")],
        "helper": helper.__file__, "path": sys.path,
    }))
"""


def report_project(folder: Path) -> Path:
    folder.mkdir()
    return write(
        folder,
        {
            "job.py": REPORT,
            "helper.py": "",
            "MLproject": """
                name: report
                entry_points:
                  main:
                    parameters:
                      x: {type: float, default: 1}
                    command: python job.py {x}
            """,
        },
    )


def run_report(settings: Settings, project: Path, name: str) -> dict:
    client = mlflow.MlflowClient(settings.tracking_uri, settings.registry_uri)
    experiment = client.get_experiment_by_name("spares")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("spares")
    run_id = client.create_run(experiment_id).info.run_id
    log_path = settings.home / "logs" / f"{name}.log"
    result = LocalExecutor(settings, poll_seconds=0.05).run(
        AttemptRequest(str(project), "main", {"x": "2"}, experiment_id, run_id, 120, log_path)
    )
    text = log_path.read_text()
    assert result.succeeded, text
    assert client.get_run(run_id).info.status == "FINISHED"
    seen = json.loads(next(line for line in text.splitlines() if line.startswith("{")))
    assert seen["run"] == run_id
    return seen


@pytest.mark.integration
def test_an_attempt_runs_in_a_spare_with_its_libraries_imported_as_python_would_run_it(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CT_SMTP_PASSWORD", "not for training")
    project = report_project(tmp_path / "report")
    warm_up(settings, project)  # as `ct-service run` does before its pipeline

    first = run_report(settings, project, "first")
    assert first["preloaded"]  # imported before the script ran: it ran in the spare
    assert {k: first[k] for k in ("name", "file", "argv", "path0", "cwd", "helper")} == {
        "name": "__main__",
        "file": str(project / "job.py"),
        "argv": ["job.py", "2"],
        "path0": str(project),
        "cwd": str(project),
        "helper": str(project / "helper.py"),  # the project's own module, not a stale one
    }
    assert first["secrets"] == []

    second = run_report(settings, project, "second")  # the spare the first one readied
    assert second["preloaded"] and second["pid"] != first["pid"]


@pytest.mark.integration
def test_without_warm_launchers_every_attempt_starts_cold(settings: Settings, tmp_path: Path):
    """And the script finds its imports where a cold `python job.py` finds them: the
    warm launcher's own starting folder is not among them."""
    project = report_project(tmp_path / "report")
    warm_up(settings, project)
    warm = run_report(settings, project, "warm")
    cold = replace(settings, warm_launcher_seconds=0.0)
    warm_up(cold, project)
    seen = run_report(cold, project, "cold")
    assert warm["preloaded"] and not seen["preloaded"]
    assert warm["path"] == seen["path"]


@pytest.mark.integration
def test_an_unused_spare_exits_after_its_idle_time() -> None:
    spare = spawn((), {**OURS, "PYTHONPATH": os.pathsep.join(sys.path)}, idle_seconds=0.5)
    assert spare.wait(timeout=30) == 0


@pytest.mark.integration
def test_a_spare_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    starter = (
        "import os, sys\n"
        "from ct_service.execution.spares import SPARES\n"
        "SPARES.start((), dict(os.environ), 600)\n"
        "print(next(iter(SPARES._ready.values())).pid, flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", starter], capture_output=True, text=True, timeout=60, check=True
    )
    spare = int(done.stdout.strip())
    deadline = time.monotonic() + 15
    while alive(spare) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(spare)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(autouse=True)
def no_spares_left() -> object:
    yield
    SPARES.close()
