"""Warm launchers kept ready for the next attempt in this Python environment.

Most of a short attempt's fixed cost is its interpreter importing TensorFlow, MLflow
and the like. A spare (warm_launcher.py) imports what the project's code imports
while the service creates the attempt's runs, so that an attempt finds its
libraries loaded: the embedded `ct-service run` starts one for its project before
its pipeline exists, and the local executor starts the next one as an attempt ends
(for the attempt the policy proposes next). A spare serves only attempts with the
same modules and the same environment, exits after CT_WARM_LAUNCHER_SECONDS unused
and dies with the process that started it. Only the local executor's commands that
are a plain `python script.py ...` of this environment run in one.

Which modules: the absolute imports of the project's Python files that are neither
the standard library's nor the project's own (a spare imports nothing from the
project). A project that sets environment variables in code (os.environ[...] = ...,
often read by a library when it is imported, as KERAS_BACKEND is) gets none
preloaded: its imports must see what it sets.
"""

from __future__ import annotations

import ast
import json
import logging
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from ct_service.exceptions import CtError
from ct_service.execution import env_manager
from ct_service.execution.environment import declared_image
from ct_service.execution.training_env import child_environment
from ct_service.project_files import MAX_SOURCE_BYTES, python_files, read_bytes
from ct_service.settings import Settings

log = logging.getLogger(__name__)

SHELL_SYNTAX = set("$`*?[]{}~<>|&;()!#\\\n")
ENVIRONMENT_WRITES = {"update", "setdefault", "pop", "popitem", "clear", "putenv", "unsetenv"}

Key = tuple[tuple[str, ...], tuple[tuple[str, str], ...]]


def script_argv(command: str, env: dict[str, str]) -> list[str] | None:
    """The script and its arguments when `command` is `python <script.py> ...` run by
    this environment's interpreter, with nothing bash would interpret; else None."""
    words = python_script(command)
    if words is None:
        return None
    found = shutil.which(words[0], path=env.get("PATH", ""))
    if found is None or Path(found).absolute().parent != Path(sys.executable).absolute().parent:
        return None
    return words[1:]


def python_script(command: str) -> list[str] | None:
    """The words of `command` when it is `python* <script.py> ...` with nothing a
    shell would interpret; else None."""
    if SHELL_SYNTAX & set(command):
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if len(words) < 2 or not words[1].endswith(".py") or not words[0].startswith("python"):
        return None
    return words


def modules_to_preload(project: Path) -> tuple[str, ...]:
    """The top-level names of the libraries the project's Python files import."""
    files = python_files(project)
    own = {p.stem for p in files} | {p.name for p in project.iterdir() if p.is_dir()}
    names: set[str] = set()
    for path in files:
        try:
            tree = ast.parse(read_bytes(project, path, MAX_SOURCE_BYTES))
        except (SyntaxError, ValueError):
            continue
        if _writes_environment(tree):
            log.info("%s sets environment variables in code: nothing preloaded", path.name)
            return ()
        names |= _imported(tree)
    return tuple(sorted(names - own - set(sys.stdlib_module_names) - {"__future__"}))


def _imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _writes_environment(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            if any(isinstance(t, ast.Subscript) and _is_environ(t.value) for t in targets):
                return True
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ENVIRONMENT_WRITES and (
                _is_environ(node.func.value) or _names(node.func.value, "os")
            ):
                return True
    return False


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or _names(node, "environ")


def _names(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


class Spares:
    """At most one ready launcher per (modules, environment)."""

    def __init__(self) -> None:
        self._ready: dict[Key, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def start(self, modules: tuple[str, ...], env: dict[str, str], idle_seconds: float) -> None:
        """Have one ready for these modules and this environment, for idle_seconds."""
        key = _key(modules, env)
        with self._lock:
            ready = self._ready.get(key)
            if ready is None or ready.poll() is not None:
                self._ready[key] = spawn(modules, env, idle_seconds)

    def take(self, modules: tuple[str, ...], env: dict[str, str]) -> subprocess.Popen | None:
        """The ready launcher for these modules and environment, if one is alive."""
        with self._lock:
            ready = self._ready.pop(_key(modules, env), None)
        if ready is not None and ready.poll() is None:
            return ready
        return None

    def close(self) -> None:
        """Stop every ready launcher (this process is going away)."""
        with self._lock:
            ready, self._ready = list(self._ready.values()), {}
        for process in ready:
            process.kill()
            process.wait()


def spawn(modules: tuple[str, ...], env: dict[str, str], idle_seconds: float) -> subprocess.Popen:
    """A launcher that imports `modules`, then waits idle_seconds for its attempt."""
    command = [sys.executable, "-m", "ct_service.execution.warm_launcher"]
    return subprocess.Popen(
        [*command, str(idle_seconds), *modules],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,  # until its request names its log
        stderr=subprocess.DEVNULL,
        env=env,
        cwd="/",  # not the project (it imports nothing of it), nor a folder others write to
        start_new_session=True,  # its own process group, killed as one
    )


SPARES = Spares()  # this process's


def warm_up(settings: Settings, project: Path) -> None:
    """Have the project's libraries imported for its first attempt while its pipeline
    is created, when that attempt will run here in this Python environment (local
    execution, the worker's own environment). A project that cannot run is left to
    the pipeline to report."""
    if settings.execution != "local" or settings.warm_launcher_seconds <= 0:
        return
    try:
        if (
            declared_image(project)
            or env_manager.choose(project, settings.env_manager).manager != "local"
        ):
            return
        SPARES.start(
            modules_to_preload(project), child_environment(settings), settings.warm_launcher_seconds
        )
    except (CtError, OSError, ValueError) as error:
        log.debug("no spare launcher for %s: %s", project, error)


def send(process: subprocess.Popen, request: dict[str, object]) -> None:
    """Give a launcher its attempt."""
    assert process.stdin is not None
    process.stdin.write(json.dumps(request).encode() + b"\n")
    process.stdin.close()


def _key(modules: tuple[str, ...], env: dict[str, str]) -> Key:
    return modules, tuple(sorted(env.items()))
