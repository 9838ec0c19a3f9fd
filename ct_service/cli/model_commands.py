"""What the registry commands do (`ct-service history`, `rollback`, `approve`,
`reject`); models.py defines their arguments and imports this only when one runs.
Each reads the registry without creating a store that is not there."""

from __future__ import annotations

import argparse
import getpass
import json

from mlflow import MlflowClient

from ct_service import approval, registry
from ct_service import history as production_history
from ct_service.cli.exit_codes import EXIT_OK
from ct_service.cli.history_table import history_table
from ct_service.exceptions import ModelNotFound
from ct_service.settings import Settings
from ct_service.tracking import Tracker, missing_store


def history(args: argparse.Namespace, settings: Settings) -> int:
    client = _client(settings, args.model)
    if args.json:
        print(json.dumps(registry.history_json(client, args.model), indent=2))
        return EXIT_OK
    held = registry.aliases(client, args.model)
    print(history_table(args.model, held, production_history.read(client, args.model)))
    return EXIT_OK


def rollback(args: argparse.Namespace, settings: Settings) -> int:
    result = registry.rollback(_client(settings, args.model), args.model, args.to, person())
    print(
        json.dumps({"version": result.version, "replaced": result.previous_version})
        if args.json
        else result.reason
    )
    return EXIT_OK


def approve(args: argparse.Namespace, settings: Settings) -> int:
    verdict = approval.approve(_client(settings, args.model), args.model, args.version, person())
    print(json.dumps(verdict.to_json()) if args.json else verdict.reason)
    return EXIT_OK


def reject(args: argparse.Namespace, settings: Settings) -> int:
    client = _client(settings, args.model)
    verdict = approval.reject(client, args.model, args.version, person(), args.reason)
    print(json.dumps(verdict.to_json()) if args.json else verdict.reason)
    return EXIT_OK


def person() -> str:
    """Who runs the command, for the history (this process's account)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _client(settings: Settings, model: str) -> MlflowClient:
    missing = missing_store(settings.registry_uri)  # reading it must not create it
    if missing is not None:
        raise ModelNotFound(f"no registered model {model!r}; no store at {missing}")
    return Tracker(settings).client
