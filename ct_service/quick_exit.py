"""Leaving a process as the interpreter would, less its teardown.

Python frees every module one by one when it exits: about two seconds with
TensorFlow loaded (after each attempt, while the worker waits for it), about one
with MLflow, Celery and SQLAlchemy (each `ct-service` command). What matters of an
exit is kept: non-daemon threads are waited for (idle pool workers told to stop),
exit handlers run (MLflow ends an active run, logging flushes its handlers), the
files __main__ left open are closed, and the output is flushed.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def leave(code: int) -> NoReturn:
    """Exit with `code` as the interpreter would, without freeing its modules."""
    # What Py_Finalize does first: threading's exit hooks (idle concurrent.futures
    # workers are told to stop), then the wait for non-daemon threads, then atexit.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    sys.modules["__main__"].__dict__.clear()  # its open files are closed, so flushed
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
