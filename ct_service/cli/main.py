"""The `ct-service` command: one parser, each group of commands in its own module.

Exit codes (exit_codes.py): 0 the target was reached (promoted, or production kept
because it is better); 1 the pipeline failed; 2 bad input (settings, project,
arguments); 3 the target was not reached (budget spent, or stopped); 4 no such
pipeline; 130 interrupted (the pipeline cancelled).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from importlib import metadata

from ct_service.cli import models, pipelines, reproduce, service, webhook
from ct_service.cli.arguments import described
from ct_service.cli.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NOT_FOUND, EXIT_USAGE
from ct_service.exceptions import CtError, PipelineNotFound
from ct_service.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # as Ctrl-C: `run` cancels its pipeline
    _configure_logging(args.verbose)
    try:
        settings = Settings.from_env()
        return int(args.handler(args, settings))
    except CtError as error:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND if isinstance(error, PipelineNotFound) else EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug or an outage nobody foresaw: one line, unless -v
        if args.verbose:
            raise
        print(f"error: {type(error).__name__}: {error} (-v shows where)", file=sys.stderr)
        return EXIT_FAILED


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="ct-service",
        **described(
            "Continuous training for MLflow projects: train a project until it reaches "
            "its target, promote it in the model registry, notify people. Settings come "
            "from CT_* environment variables (docs/settings.md).",
            "ct-service run projects/lenet -P data=../shared/data/mnist",
            "ct-service status",
            "ct-service COMMAND --help",
        ),
    )
    root.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _add_verbosity(root, default=False)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pipelines.add_commands(commands)
    models.add_commands(commands)
    reproduce.add_commands(commands)
    service.add_commands(commands)
    webhook.add_commands(commands)
    for command in commands.choices.values():  # `ct-service run -q` as well as `ct-service -q run`
        _add_verbosity(command, default=argparse.SUPPRESS)
    return root


def _add_verbosity(parser: argparse.ArgumentParser, default: bool | str) -> None:
    """-q and -v; a subcommand's default is SUPPRESS, so it keeps the top parser's value."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="print no progress lines (attempts, epochs), only the result",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="also print log lines (MLflow's INFO among them) and tracebacks",
    )


def _configure_logging(verbose: bool) -> None:
    """With -v, log lines at INFO on stderr; without, MLflow's own INFO lines (a new
    store's tables, ...) are hidden. MLflow sets its logger's level from
    MLFLOW_LOGGING_LEVEL when it is imported, after this: the commands import it
    only when they run. A level the user set is kept."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    else:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def _version() -> str:
    try:
        return metadata.version("ct-service")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"
