"""Scoring: one registered model version's metric on one data version, measured the
way its project measures it. The decay watch scores `@production` on the newest data
with it; promotion can score the champion on a challenger's test data with it (the
same data version, metric and code path as the candidate's evaluation).

`score` does, in order:

1. find a finished scoring run of this (model version, data version, metric): its
   value is the score (the same model on the same data scores the same);
2. read the version's project: the code of the pipeline that trained it, at its
   commit (a git source is fetched from the allow-list);
3. fetch the data version into its local folder (S3: the worker's cache) and the
   model's files into `CT_HOME/scoring/models/<name>/<version>` (once, built aside);
4. create the scoring run (`ct.kind` score) in the model's experiment;
5. with an `evaluate` entry point: run it as an MLflow project run through the
   executor training uses (in Docker when the service trains in Docker: the project's
   code only in the container, which logs through the run-scoped gateway and gets the
   model and the data as read-only folders, never the registry), its parameters
   `model_uri` (the model's folder) and the data's; the metric is read from its run.
   Without one: `mlflow.models.evaluate` on the pyfunc model in this process, on the
   table ct.yaml's `scoring:` names, for classifiers and regressors; refused for a
   pushed project's model (loading it would run pushed code here);
6. record how it went: the value, or a one-line failure (a model that cannot load, a
   run that fails): a Score without a value, never an exception, so the caller
   decides (the decay watch reports it; promotion falls back to the stored metric).
   Infrastructure failures (MLflow, the store) raise."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from mlflow.exceptions import MlflowException

from ct_service import run_tags
from ct_service.data_cache import materialize
from ct_service.data_spec import TestTable
from ct_service.data_version import DataVersion
from ct_service.exceptions import CtError, DataError, InfrastructureError, ProjectError
from ct_service.execution.executor import AttemptRequest
from ct_service.execution.loader import executor_for
from ct_service.orchestration import git_source
from ct_service.project import EVALUATE, MODEL_PARAM, Project, load_project
from ct_service.settings import Settings
from ct_service.tracking import Pipeline, Tracker

log = logging.getLogger(__name__)


class Method(str, Enum):
    ENTRY_POINT = "evaluate entry point"
    MLFLOW_EVALUATE = "mlflow.models.evaluate"


@dataclass(frozen=True)
class Score:
    model_name: str
    model_version: str
    data: DataVersion
    metric: str
    value: float | None  # None: it could not be scored (failure says why)
    method: str
    run_id: str  # the scoring run
    failure: str = ""

    def describe(self) -> str:
        shown = f"{self.value:.4f}" if self.value is not None else f"not scored ({self.failure})"
        return (
            f"{self.model_name} v{self.model_version} on {self.data.short}: {self.metric} {shown}"
        )


def score(
    settings: Settings, tracker: Tracker, model_name: str, version: str, data: DataVersion
) -> Score:
    """The version's target metric (its pipeline's) on `data` (the steps above)."""
    model = tracker.client.get_model_version(model_name, version)
    trained_by = tracker.pipeline(model.tags.get(run_tags.PIPELINE_ID, "") or "-")
    metric = trained_by.spec.target.metric
    earlier = scored(tracker, trained_by.experiment_id, model_name, version, data.digest, metric)
    if earlier is not None:
        return earlier
    project = load_project(git_source.project_folder(settings, trained_by))
    folder, current, _ = materialize(settings, data)
    if current.digest != data.digest:  # a folder is read in place: it holds other data now
        raise DataError(
            f"{data.source} holds version {current.short} now, not {data.short}: "
            "scoring it would record another version's score"
        )
    run_id = tracker.client.create_run(
        trained_by.experiment_id,
        run_name=f"score {model_name} v{version} on {data.short}",
        tags={
            run_tags.KIND: "score",
            run_tags.MODEL_NAME: model_name,
            run_tags.SCORED_VERSION: version,
            run_tags.SCORE_METRIC: metric,
            run_tags.PIPELINE_ID: trained_by.id,
            **data.to_tags(),
        },
    ).info.run_id
    method = Method.ENTRY_POINT if project.evaluate is not None else Method.MLFLOW_EVALUATE
    tracker.set_tags(run_id, {run_tags.SCORE_METHOD: method.value})
    try:
        model_folder = model_files(settings, model_name, version)
        context = _Context(settings, tracker, trained_by, project, run_id, metric)
        if method is Method.ENTRY_POINT:
            value = _by_entry_point(context, model_folder, folder, current)
        else:
            value = _by_mlflow_evaluate(context, model_folder, folder)
        failure = ""
    except InfrastructureError:
        raise
    except CtError as error:  # this model or project cannot be scored: said, not raised
        value, failure = None, str(error).splitlines()[0][:300]
    tracker.set_tags(
        run_id,
        {run_tags.STATUS: "failed" if failure else "finished", run_tags.FAILURE: failure},
    )
    if tracker.client.get_run(run_id).info.status == "RUNNING":
        tracker.client.set_terminated(run_id, "FAILED" if failure else "FINISHED")
    found = Score(model_name, version, data, metric, value, method.value, run_id, failure)
    log.info("scored %s (%s, run %s)", found.describe(), method.value, run_id)
    return found


def scored(
    tracker: Tracker, experiment_id: str, model_name: str, version: str, digest: str, metric: str
) -> Score | None:
    """The score a finished scoring run recorded for this model version, data version
    and metric; None when there is none."""
    runs = tracker.client.search_runs(
        [experiment_id],
        f"tags.`{run_tags.KIND}` = 'score'"
        f" and tags.`{run_tags.MODEL_NAME}` = '{_quoted(model_name)}'"
        f" and tags.`{run_tags.SCORED_VERSION}` = '{_quoted(version)}'"
        f" and tags.`{run_tags.DATA_VERSION}` = '{digest}'"
        f" and tags.`{run_tags.SCORE_METRIC}` = '{_quoted(metric)}'"
        f" and tags.`{run_tags.STATUS}` = 'finished'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs or metric not in runs[0].data.metrics:
        return None
    run = runs[0]
    data = DataVersion.from_tags(run.data.tags) or DataVersion("", "", digest)
    method = run.data.tags.get(run_tags.SCORE_METHOD, "")
    return Score(model_name, version, data, metric, run.data.metrics[metric], method,
                 run.info.run_id)  # fmt: skip


def model_files(settings: Settings, model_name: str, version: str) -> Path:
    """The registered version's MLflow model as a local folder (a version never
    changes: downloaded once, built aside and renamed into place)."""
    import mlflow

    folder = (settings.home / "scoring" / "models" / _safe(model_name) / _safe(version)).resolve()
    if (folder / "MLmodel").is_file():
        if folder.stat().st_mode & 0o777 != 0o555:  # built before it was made readable
            _readable_by_all(folder)
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".build-{folder.name}-"))
    try:
        try:
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{model_name}/{version}", dst_path=str(building)
            )
        except MlflowException as error:
            raise ProjectError(f"model {model_name} v{version}: its files cannot be read: "
                               f"{str(error).splitlines()[0][:200]}") from None  # fmt: skip
        if not (building / "MLmodel").is_file():
            raise ProjectError(f"model {model_name} v{version} has no MLmodel file")
        _readable_by_all(building)
        try:
            os.rename(building, folder)
        except OSError:
            if not (folder / "MLmodel").is_file():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return folder


def _readable_by_all(folder: Path) -> None:
    """Read-only for everyone: an evaluate container runs as a user of its image, and
    mkdtemp makes a folder its creator's alone (0700)."""
    for root, _, files in os.walk(folder):
        os.chmod(root, 0o555)
        for name in files:
            os.chmod(Path(root) / name, 0o444)


@dataclass(frozen=True)
class _Context:
    """What one scoring works with."""

    settings: Settings
    tracker: Tracker
    trained_by: Pipeline  # the pipeline that trained the version: its code, its experiment
    project: Project
    run_id: str  # the scoring run
    metric: str


def _by_entry_point(
    context: _Context, model_folder: Path, data_folder: Path, data: DataVersion
) -> float:
    settings, tracker, project = context.settings, context.tracker, context.project
    trained_by, run_id, metric = context.trained_by, context.run_id, context.metric
    assert project.evaluate is not None
    data_param = data.param or "data"
    missing = [p for p in (MODEL_PARAM, data_param) if p not in project.evaluate.parameters]
    if missing:
        raise ProjectError(
            f"{project.path / 'MLproject'}: the '{EVALUATE}' entry point takes no "
            f"{' or '.join(missing)} parameter (it is given {MODEL_PARAM} and {data_param})"
        )
    executor = executor_for(settings)
    request = AttemptRequest(
        project_uri=str(project.path),
        entry_point=EVALUATE,
        parameters={MODEL_PARAM: str(model_folder), data_param: str(data_folder)},
        experiment_id=trained_by.experiment_id,
        run_id=run_id,
        timeout_seconds=settings.attempt_timeout_seconds,
        log_path=settings.home / "logs" / f"score-{run_id}.log",
        data_roots=(str(model_folder), str(data_folder)),
    )
    request, choices = executor.prepare(request)
    refuse_pushed_code_outside_a_container(settings, trained_by, executor.name)
    tracker.set_tags(run_id, {**choices, run_tags.EXECUTOR: executor.name})
    result = executor.run(request, lambda: None)
    if result.refused:  # calls outside its scoring run (the registry, other runs): said
        tracker.set_tags(run_id, {run_tags.REFUSED: result.refused})
    if request.log_path.is_file():
        tracker.client.log_artifact(run_id, str(request.log_path))
    if not result.succeeded:
        raise ProjectError(f"the evaluate run failed: {result.failure}")
    metrics = tracker.client.get_run(run_id).data.metrics
    if metric not in metrics:
        logged = ", ".join(sorted(metrics)) or "none"
        raise ProjectError(f"the evaluate run logged no {metric}; it logged: {logged}")
    return float(metrics[metric])


def _by_mlflow_evaluate(context: _Context, model_folder: Path, data_folder: Path) -> float:
    """mlflow.models.evaluate's default evaluator, in this process (the model's code
    is loaded here: only a model of code the operator runs here already)."""
    import mlflow

    settings, project, trained_by = context.settings, context.project, context.trained_by
    run_id, metric = context.run_id, context.metric

    if pushed(trained_by) and not settings.trust_pushed_code:
        raise ProjectError(
            f"{project.name}: a pushed project's model is loaded only in a container; "
            f"declare an '{EVALUATE}' entry point to score it"
        )
    table_spec = project.scoring
    if table_spec is None:
        raise ProjectError(
            f"{project.path}: cannot score a model of {project.name}: declare an "
            f"'{EVALUATE}' entry point in its MLproject, or ct.yaml `scoring: {{file, targets}}`"
        )
    table = _read_table(data_folder, table_spec)
    start = time.monotonic()
    with mlflow.start_run(run_id=run_id):
        try:
            result = mlflow.models.evaluate(
                str(model_folder),
                table,
                targets=table_spec.targets,
                model_type=table_spec.model_type,
                evaluators=["default"],
            )
        except Exception as error:  # the model does not load or predict: its own failure
            raise ProjectError(
                f"mlflow.models.evaluate failed: {type(error).__name__}: "
                f"{str(error).splitlines()[0][:200] if str(error) else ''}"
            ) from None
        wanted = table_spec.evaluator_metric
        if wanted not in result.metrics:
            known = ", ".join(sorted(result.metrics))
            raise ProjectError(f"mlflow.models.evaluate gave no {wanted}; it gave: {known}")
        value = float(result.metrics[wanted])
        mlflow.log_metrics({metric: value, "scoring_seconds": time.monotonic() - start})
    return value


def _read_table(folder: Path, spec: TestTable):
    import pandas as pd

    path = folder / spec.file
    if not path.is_file():
        raise ProjectError(f"{path}: no such file in the data version (ct.yaml scoring.file)")
    table = pd.read_parquet(path) if spec.file.endswith(".parquet") else pd.read_csv(path)
    if spec.targets not in table.columns:
        raise ProjectError(f"{path} has no column {spec.targets} (ct.yaml scoring.targets)")
    return table


def pushed(pipeline: Pipeline) -> bool:
    """Its code came from a push (it runs only in a container unless trusted)."""
    return bool(pipeline.spec.source_branch or pipeline.tags.get(run_tags.SOURCE_REPOSITORY))


def refuse_pushed_code_outside_a_container(
    settings: Settings, pipeline: Pipeline, executor_name: str
) -> None:
    """A push decides what code runs; by default it runs only in a container."""
    if pushed(pipeline) and executor_name == "local" and not settings.trust_pushed_code:
        raise ProjectError(
            "pushed code runs only in a container, and this one would run on the worker "
            "itself (CT_EXECUTION=local, or auto without an engine or an image): use "
            "CT_EXECUTION=docker, or set CT_TRUST_PUSHED_CODE=1 to accept running it here"
        )


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "_"


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
