"""Argument types and help texts shared by the commands."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

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


def described(summary: str, *examples: str, notes: str = "") -> dict[str, Any]:
    """The keyword arguments that give a parser's --help its description (`summary`,
    wrapped; paragraphs split by blank lines), then `notes` and `examples` as written."""
    paragraphs = [textwrap.fill(" ".join(p.split()), 79) for p in summary.split("\n\n")]
    epilog = f"{notes.rstrip()}\n\n" if notes else ""
    epilog += "examples:\n" + "\n".join(f"  {example}" for example in examples)
    return {
        "description": "\n\n".join(paragraphs),
        "epilog": epilog,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
