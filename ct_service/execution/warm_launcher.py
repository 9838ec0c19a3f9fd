"""A launcher started before its attempt is known: it imports the libraries the
project's code imports (TensorFlow, MLflow, ...: seconds of a short attempt) while
the service creates the pipeline's and the attempt's runs, then waits for its
attempt and runs the entry point's `python script.py ...` in itself, as `python`
would run it. The executor keeps one ready (spares.py) and falls back to
launcher.py for any other command.

    python -m ct_service.execution.warm_launcher <idle seconds> [module ...]

It reads one request, a line of JSON, from stdin: argv (the script and its
arguments), work_dir, env (the whole environment the command gets, the run's ids
included), log (the file its output goes to; without one it stays on this
process's output), links (symlinks to make first, {path: target}) and command (for
the log). Without a request within the idle time, or at end of input, it exits 0.
Like launcher.py it leads its own process group and kills it when the process that
started it dies; as a container's first process (spare_containers.py: its parent is
outside the container) it has none to watch, and the container is removed instead.

Exit status is the script's own, as with `python script.py`: 0, the code it exits
with, 1 for an uncaught exception, or death by the signal that killed it.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.machinery
import json
import os
import select
import sys
import types
from typing import NoReturn

from ct_service.quick_exit import leave


def main(argv: list[str]) -> None:
    if os.getppid() != 0:  # 0: a container's first process
        from ct_service.execution.launcher import die_with_parent

        die_with_parent(os.getppid())
    del sys.path[0]  # the working directory `-m` put first: imports come from the environment
    idle_seconds, modules = float(argv[0]), argv[1:]
    for module in modules:
        preload(module)
    request = wait_for_request(idle_seconds)
    if request is not None:
        run(request)


def preload(module: str) -> None:
    """Import a module the project imports; one that fails is left for the script
    to import (and report) itself."""
    try:
        importlib.import_module(module)
    except BaseException:  # noqa: BLE001 - any failure is the script's to meet
        sys.modules.pop(module, None)


def wait_for_request(idle_seconds: float) -> dict | None:
    readable, _, _ = select.select([sys.stdin], [], [], idle_seconds)
    if not readable:
        return None
    line = sys.stdin.buffer.readline()
    return json.loads(line) if line.strip() else None


def run(request: dict) -> NoReturn:
    """Become `python <argv...>` in the project's folder, with the command's
    environment and output, and exit with its status."""
    if request.get("log"):
        output = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
    for path, target in request.get("links", {}).items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(target, path)
    nothing = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nothing, 0)
    os.close(nothing)
    os.chdir(request["work_dir"])
    os.environ.clear()
    os.environ.update(request["env"])
    run_id = request["env"]["MLFLOW_RUN_ID"]
    print(f"=== Running command '{request['command']}' in run with ID '{run_id}' ===")
    script = os.path.abspath(request["argv"][0])
    sys.argv = list(request["argv"])
    sys.path.insert(0, os.path.dirname(script))  # as `python script.py` does
    try:
        run_as_main(script)
        code = 0
    except SystemExit as stop:
        code = exit_code(stop.code)
    except BaseException:  # noqa: BLE001 - reported as the interpreter reports it
        sys.excepthook(*sys.exc_info())
        code = 1
    leave(code)


def exit_code(code: object) -> int:
    """The status `sys.exit(code)` ends the interpreter with."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def run_as_main(script: str) -> None:
    """Run the file as `python script` runs it: a new __main__ module, absolute
    __file__, argv[0] as given (runpy.run_path would rewrite it and put the module
    back after, so that pickles of its classes would not load)."""
    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", script)
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    with open(script, "rb") as source:
        code = compile(source.read(), script, "exec")
    exec(code, main.__dict__)


if __name__ == "__main__":
    main(sys.argv[1:])
