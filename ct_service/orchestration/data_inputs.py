"""A pipeline's declared data (ct.yaml `data`): pinned to a version when the pipeline
is created (or, for a git source whose ct.yaml is read only then, started), and given
to each attempt as a local read-only folder, recorded on the attempt (tags and an
MLflow dataset input) and, through the candidate, on the registered version."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag

from ct_service import run_tags
from ct_service.data_cache import materialize, version_folder
from ct_service.data_version import DataVersion, version_of
from ct_service.execution.executor import AttemptRequest
from ct_service.project import Project
from ct_service.settings import Settings
from ct_service.tracking import Pipeline, Tracker

log = logging.getLogger(__name__)
DATASET_NAME = "ct-data"  # the MLflow dataset input an attempt's data is logged as
DATASET_DIGEST_LENGTH = 12  # MLflow keeps a dataset's digest in 36 characters


def declared_version(
    settings: Settings, project: Project, given: Mapping[str, Any]
) -> DataVersion | None:
    """The current version of the project's declared data, unless it declares none or
    its parameter is given a value (a `-P data=...` wins over the declaration)."""
    if project.data is None or project.data.param in given:
        return None
    return version_of(settings, project.data)


def pinned_config(
    settings: Settings, version: DataVersion | None, given: Mapping[str, Any]
) -> dict[str, Any]:
    """The given parameters with the data parameter naming the version's folder."""
    if version is None:
        return dict(given)
    return {**given, version.param: str(version_folder(settings, version))}


def pin_at_start(
    settings: Settings, tracker: Tracker, pipeline: Pipeline, project: Project
) -> dict[str, Any]:
    """The start step's given parameters: a pipeline pinned when it was created keeps
    its version; one whose project is read only now (a git source) is pinned here."""
    given = dict(pipeline.spec.initial_config)
    if DataVersion.from_tags(pipeline.tags) is not None:
        return given
    version = declared_version(settings, project, given)
    if version is None:
        return given
    tracker.set_tags(pipeline.id, version.to_tags())
    log.info("pipeline %s trains on data version %s", pipeline.id, version.describe())
    return pinned_config(settings, version, given)


def attach(
    settings: Settings,
    tracker: Tracker,
    pipeline: Pipeline,
    attempt_id: str,
    request: AttemptRequest,
) -> AttemptRequest:
    """Fetch the pipeline's data version (S3: into the cache, only missing objects),
    record on the attempt the version it gets, and let the executor mount its folder
    read-only. A request without declared data is returned as it is."""
    pinned = DataVersion.from_tags(pipeline.tags)
    if pinned is None:
        return request
    folder, current, fetched = materialize(settings, pinned)
    if request.parameters.get(pinned.param) != str(folder):
        return request  # the attempt was given another value: it is not the declared data
    tracker.set_tags(attempt_id, current.to_tags())
    tracker.client.log_inputs(
        attempt_id,
        datasets=[
            DatasetInput(
                Dataset(
                    name=DATASET_NAME,
                    digest=current.digest[:DATASET_DIGEST_LENGTH],
                    source_type="s3" if current.source.startswith("s3://") else "local",
                    source=json.dumps({"uri": current.source}),
                ),
                tags=[InputTag("mlflow.data.context", "training")],
            )
        ],
    )
    if fetched:
        log.info("attempt %s: fetched %d object(s) of %s", attempt_id, fetched, current.describe())
    return replace(request, data_roots=(*request.data_roots, str(folder)))


def lineage_tags(candidate_tags: Mapping[str, str]) -> dict[str, str]:
    """The data tags a registered version copies from the attempt it registers."""
    names = (
        run_tags.DATA_SOURCE,
        run_tags.DATA_PARAM,
        run_tags.DATA_VERSION,
        run_tags.DATA_OBJECTS,
    )
    return {name: candidate_tags[name] for name in names if candidate_tags.get(name)}
