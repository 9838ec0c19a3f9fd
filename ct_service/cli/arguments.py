"""Argument types shared by the commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from ct_service.exceptions import CtError


def whole(text: str) -> int:
    """A whole number >= 1; `mlflow run` may pass 5 as "5.0"."""
    number = float(text)
    if not number.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text}")
    value = int(number)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def overrides(pairs: list[str]) -> dict[str, str]:
    """-P NAME=VALUE pairs; values naming an existing file or folder made absolute."""
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CtError(f"-P expects NAME=VALUE, got {pair!r}")
        values[name] = str(Path(value).resolve()) if value and Path(value).exists() else value
    return values
