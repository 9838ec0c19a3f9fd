"""What a project's ct.yaml declares about its data:

    data: {param: data, source: s3://bucket/mnist/}     # or source: /srv/data/mnist

`param` is the MLproject parameter that receives the data's local folder; `source`
is an S3 prefix (a bucket on CT_DATA_BUCKETS) or an absolute folder under
CT_DATA_DIRS. Pure: the settings are checked where the source is read
(data_version.py)."""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

S3_SCHEME = "s3://"


class SourceKind(str, Enum):
    S3 = "s3"
    FOLDER = "folder"


@dataclass(frozen=True)
class DataSpec:
    param: str
    source: str

    @property
    def kind(self) -> SourceKind:
        return SourceKind.S3 if self.source.startswith(S3_SCHEME) else SourceKind.FOLDER

    @property
    def bucket(self) -> str:
        return split_s3(self.source)[0]

    @property
    def prefix(self) -> str:
        return split_s3(self.source)[1]

    @classmethod
    def from_spec(cls, spec: Any, parameters: Collection[str]) -> DataSpec:
        """The `data` block; ValueError naming the bad key (the caller adds the file)."""
        if not isinstance(spec, Mapping):
            raise ValueError("data must be a mapping with param and source")
        unknown = sorted(str(key) for key in spec if key not in ("param", "source"))
        if unknown:
            raise ValueError(f"data: unknown key(s) {', '.join(unknown)}; known: param, source")
        param, source = spec.get("param"), spec.get("source")
        if not isinstance(param, str) or not param.strip():
            raise ValueError("data.param must name the MLproject parameter that gets the data")
        if param not in parameters:
            known = ", ".join(sorted(parameters)) or "none"
            raise ValueError(
                f"data.param names {param!r}, not a parameter of the MLproject ({known})"
            )
        if not isinstance(source, str) or not source.strip():
            raise ValueError("data.source must be s3://bucket/prefix/ or an absolute folder")
        source = source.strip()
        if source.startswith(S3_SCHEME):
            split_s3(source)  # a bucket is named
        elif not posixpath.isabs(source):
            raise ValueError(
                f"data.source {source!r} must be s3://bucket/prefix/ or an absolute folder"
            )
        return cls(param.strip(), source)


def split_s3(url: str) -> tuple[str, str]:
    """(bucket, prefix) of s3://bucket/prefix; ValueError without a bucket."""
    bucket, _, prefix = url.removeprefix(S3_SCHEME).partition("/")
    if not url.startswith(S3_SCHEME) or not bucket:
        raise ValueError(f"{url!r} is not an S3 URL of the form s3://bucket/prefix/")
    return bucket, prefix


MODEL_TYPES = ("classifier", "regressor")  # what mlflow.models.evaluate scores here
DEFAULT_METRICS = {"classifier": "accuracy_score", "regressor": "root_mean_squared_error"}


@dataclass(frozen=True)
class TestTable:
    """ct.yaml `scoring:`, for a project without an `evaluate` entry point: a table
    in the data's folder that `mlflow.models.evaluate` scores the pyfunc model on.

        scoring: {file: test.csv, targets: label, model_type: classifier, metric: accuracy_score}

    `metric` names the evaluator's metric that stands for the project's target metric
    (default: accuracy_score for a classifier, root_mean_squared_error for a regressor)."""

    __test__ = False  # not a pytest class, whatever its name

    file: str
    targets: str
    model_type: str = "classifier"
    metric: str = ""

    @property
    def evaluator_metric(self) -> str:
        return self.metric or DEFAULT_METRICS[self.model_type]

    @classmethod
    def from_spec(cls, spec: Any) -> TestTable:
        """ValueError naming the bad key (the caller adds the file)."""
        known = ("file", "targets", "model_type", "metric")
        if not isinstance(spec, Mapping):
            raise ValueError("scoring must be a mapping with file and targets")
        unknown = sorted(str(key) for key in spec if key not in known)
        if unknown:
            raise ValueError(
                f"scoring: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        file, targets = spec.get("file"), spec.get("targets")
        if not isinstance(file, str) or not file.endswith((".csv", ".parquet")):
            raise ValueError("scoring.file must name a .csv or .parquet file in the data's folder")
        normal = posixpath.normpath(file)
        if posixpath.isabs(normal) or normal.startswith(".."):
            raise ValueError(f"scoring.file {file!r} must stay inside the data's folder")
        if not isinstance(targets, str) or not targets.strip():
            raise ValueError("scoring.targets must name the table's label column")
        model_type = spec.get("model_type", "classifier")
        if model_type not in MODEL_TYPES:
            raise ValueError(f"scoring.model_type must be one of {', '.join(MODEL_TYPES)}")
        metric = spec.get("metric", "")
        if not isinstance(metric, str):
            raise ValueError("scoring.metric must name one of mlflow.models.evaluate's metrics")
        return cls(normal, targets.strip(), model_type, metric.strip())
