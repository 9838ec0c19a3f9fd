"""Promotion in the MLflow model registry, champion/challenger, and rollback.

The production version holds alias `production` and stage "Production"; the one it
replaced holds alias `previous-production`, so a rollback is one call.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ct_service import run_tags
from ct_service.exceptions import CtError, RollbackError
from ct_service.target import Target

MODEL_NAME_IN_RUN = "model"  # projects log their model as mlflow.<flavor>.log_model(name="model")
PRODUCTION = "production"
PREVIOUS = "previous-production"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Promotion:
    version: str
    promoted: bool
    reason: str
    previous_version: str = ""


def register(client: MlflowClient, name: str, run_id: str, tags: dict[str, str]) -> str:
    """The version registered from `run_id`'s model; registers it only once."""
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        return str(existing[0].version)
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source, model_id = _model_source(client, run_id)
    version = client.create_model_version(name, source, run_id=run_id, tags=tags, model_id=model_id)
    return str(version.version)


def _model_source(client: MlflowClient, run_id: str) -> tuple[str, str | None]:
    """MLflow 3 keeps a run's model as a LoggedModel (`models:/<model_id>`), not
    under the run's own artifacts; `runs:/` URIs are resolved the same way."""
    run = client.get_run(run_id)
    models = client.search_logged_models(
        [run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_NAME_IN_RUN}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
    )
    if models:
        return f"models:/{models[0].model_id}", models[0].model_id
    if any(
        a.path == f"{MODEL_NAME_IN_RUN}/MLmodel"
        for a in client.list_artifacts(run_id, MODEL_NAME_IN_RUN)
    ):
        return f"{run.info.artifact_uri}/{MODEL_NAME_IN_RUN}", None
    raise CtError(f"run {run_id} logged no model named {MODEL_NAME_IN_RUN!r} to register")


def promote(
    client: MlflowClient,
    name: str,
    run_id: str,
    metric: float | None,
    target: Target,
    tags: dict[str, str],
) -> Promotion:
    version = register(client, name, run_id, tags)
    champion = _version_with_alias(client, name, PRODUCTION)
    if champion is not None and str(champion.version) == version:
        return Promotion(version, True, f"version {version} already holds @{PRODUCTION}")
    if champion is not None:
        champion_metric = _metric(client, champion.run_id, target.metric)
        if champion_metric is not None and not target.is_better(metric, champion_metric):
            reason = (
                f"kept version {champion.version} in production: its {target.metric} "
                f"{champion_metric:.4g} is not worse than the candidate's {_fmt(metric)}"
            )
            client.set_model_version_tag(name, version, run_tags.DECISION, reason)
            return Promotion(version, False, reason, str(champion.version))
    if champion is not None:
        client.set_registered_model_alias(name, PREVIOUS, champion.version)
    client.set_registered_model_alias(name, PRODUCTION, version)
    _to_production_stage(client, name, version)
    beaten = f" (replacing version {champion.version})" if champion is not None else ""
    reason = f"version {version} promoted with {target.metric} {_fmt(metric)}{beaten}"
    client.set_model_version_tag(name, version, run_tags.DECISION, reason)
    return Promotion(version, True, reason, str(champion.version) if champion else "")


def rollback(client: MlflowClient, name: str) -> Promotion:
    """Give @production back to @previous-production's version; the two swap."""
    _require_model(client, name)
    previous = _version_with_alias(client, name, PREVIOUS)
    current = _version_with_alias(client, name, PRODUCTION)
    if previous is None:
        raise RollbackError(f"model {name!r} has no @{PREVIOUS} version to roll back to")
    client.set_registered_model_alias(name, PRODUCTION, previous.version)
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS, current.version)
    _to_production_stage(client, name, str(previous.version))
    replaced = current.version if current is not None else "none"
    reason = f"rolled back {name} to version {previous.version} (was {replaced})"
    log.info(reason)
    return Promotion(str(previous.version), True, reason, str(replaced))


def _require_model(client: MlflowClient, name: str) -> None:
    """Refuse a model the registry does not hold, naming the ones it holds."""
    try:
        client.get_registered_model(name)
        return
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
    raise RollbackError(f"no registered model {name!r}; {_registered_names(client)}")


def _registered_names(client: MlflowClient, limit: int = 10) -> str:
    """The registered models' names, for an error message."""
    names = [model.name for model in client.search_registered_models(max_results=limit)]
    if not names:
        return "none is registered yet"
    return "registered: " + ", ".join(names) + (", ..." if len(names) == limit else "")


def _to_production_stage(client: MlflowClient, name: str, version: str) -> None:
    """Stages are deprecated in MLflow 3 but still served (`models:/name/Production`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(
            name, version, "Production", archive_existing_versions=True
        )


def _version_with_alias(client: MlflowClient, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None  # no such model or alias yet
        raise


def _metric(client: MlflowClient, run_id: str | None, metric: str) -> float | None:
    if not run_id:
        return None
    return client.get_run(run_id).data.metrics.get(metric)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
