"""Which line of a failed run's output becomes the attempt's reason (a table)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ct_service.execution.executor import failure_reason

TRACEBACK_DOTTED = """\
2026/11/27 03:00:00 INFO mlflow.projects.utils: === Running command 'python train.py' ===
Traceback (most recent call last):
  File "train.py", line 3, in <module>
    mlflow.log_param("alpha", 1.0)
mlflow.exceptions.MlflowException: Changing param values is not allowed. Params were
already logged in the tracking store.
ct-service: Run (ID 'abc') failed
"""

CASES = [
    pytest.param(
        TRACEBACK_DOTTED,
        "mlflow.exceptions.MlflowException: Changing param values is not allowed. Params were",
        id="dotted-with-traceback",
    ),
    pytest.param(
        "epoch 1\nValueError: bad shape\n", "ValueError: bad shape", id="plain-without-traceback"
    ),
    pytest.param(
        "tensorflow.python.framework.errors_impl.NotFoundError: no file\nlast words\n",
        "tensorflow.python.framework.errors_impl.NotFoundError: no file",
        id="dotted-without-traceback",
    ),
    pytest.param(
        'Traceback (most recent call last):\n  File "t.py", line 1\nmymodule.Boom: it broke\n',
        "mymodule.Boom: it broke",
        id="any-name-after-a-traceback",
    ),
    pytest.param(
        'Traceback (most recent call last):\n  File "t.py", line 1\nKeyboardInterrupt\n',
        "KeyboardInterrupt",
        id="bare-name",
    ),
    pytest.param(
        "error: --epochs must be at least 1\n",
        "error: --epochs must be at least 1",
        id="usage-error",
    ),
    pytest.param(
        "ModuleNotFoundError: No module named 'lightgbm'\nct-service: Run (ID 'x') failed\n",
        "ModuleNotFoundError: No module named 'lightgbm'",
        id="missing-module",
    ),
    pytest.param("just some output\nthe end\n", "the end", id="no-error-line: the last line"),
    pytest.param("", "the run failed without output", id="no-output"),
    pytest.param(
        "An ErrorHandler was configured\nValueError: real\nSome ErrorText is fine\n",
        "ValueError: real",
        id="words-that-only-look-like-errors",
    ),
]


@pytest.mark.unit
@pytest.mark.parametrize(("output", "reason"), CASES)
def test_the_reason_is_the_last_exception_or_error_line(
    tmp_path: Path, output: str, reason: str
) -> None:
    log = tmp_path / "attempt.log"
    log.write_text(output)
    assert failure_reason(log, 1) == reason


@pytest.mark.unit
def test_a_signal_that_killed_the_launcher_is_named(tmp_path: Path) -> None:
    log = tmp_path / "attempt.log"
    log.write_text("epoch 1\n")
    assert failure_reason(log, -9) == "killed by signal 9: epoch 1"
