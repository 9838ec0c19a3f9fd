"""The `ct-service` command: one parser, each group of commands in its own module.

Exit codes (exit_codes.py): 0 the target was reached (promoted, or production kept
because it is better); 1 the pipeline failed; 2 bad input (settings, project,
arguments); 3 the target was not reached (budget spent, or stopped); 4 no such
pipeline.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from ct_service.cli import pipelines, service, webhook
from ct_service.cli.exit_codes import EXIT_NOT_FOUND, EXIT_USAGE
from ct_service.exceptions import CtError, PipelineNotFound
from ct_service.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # as Ctrl-C: `run` cancels its pipeline
    try:
        settings = Settings.from_env()
        return int(args.handler(args, settings))
    except PipelineNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except CtError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="ct-service",
        description="Continuous training for MLflow projects.",
        epilog="Settings come from CT_* environment variables; see README.md.",
    )
    commands = root.add_subparsers(dest="command", required=True)
    pipelines.add_commands(commands)
    service.add_commands(commands)
    webhook.add_commands(commands)
    return root
