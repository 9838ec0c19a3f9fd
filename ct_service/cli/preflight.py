"""What `ct-service run` checks before it creates anything: each bad input is
answered in one line that names the input and the fix (a CtError: exit 2), and no
store, run or folder is made for it. Checked, in order: CT_HOME can be written; the
project reads; every `-P` value has its MLproject type, lies within the search
space (unless --force) and, where it names a path, exists; the target is reachable
for a bounded metric; the services the run needs answer (the Docker engine for
CT_EXECUTION=docker; with a broker, Redis and the tracking server). One thing is
only warned about: a target metric that none of the project's earlier finished runs
logged (a misspelt --target-metric, say), since a new project version may log it.
"""

from __future__ import annotations

import difflib
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from ct_service import run_tags
from ct_service.exceptions import CtError
from ct_service.project import Project
from ct_service.settings import Settings
from ct_service.target import Direction, Target
from ct_service.tracking import Tracker, missing_store

# Metrics whose values lie in [0, 1] (a threshold outside it can never be met).
BOUNDED_METRICS = ("accuracy", "auc", "f1", "precision", "recall", "r2")
# Metrics that are never negative (a minimise threshold below 0 can never be met).
NON_NEGATIVE_METRICS = ("loss", "error", "mse", "rmse", "mae", "log_loss", "crossentropy")
PATH_LIKE = ("/", "./", "../", "~")


def check_home(settings: Settings) -> None:
    """CT_HOME is a folder this process can write (made if missing; nothing put in it)."""
    home = settings.home
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=home):
            pass
    except OSError as error:
        raise CtError(
            f"CT_HOME={home}: cannot write there ({error.strerror or error}); "
            "set CT_HOME to a folder you can write"
        ) from None


def check_parameters(project: Project, given: Mapping[str, str], force: bool) -> None:
    """Each `-P` value as the MLproject declares it, and within the search space."""
    for name, value in given.items():
        declared = project.parameters.get(name)
        if declared is None:
            continue  # unknown names are refused by the project with the known ones listed
        if declared.type in ("float", "int"):
            _number(name, value, declared.type)
        if declared.type == "path" or (declared.type == "string" and value.startswith(PATH_LIKE)):
            if not Path(os.path.expanduser(value)).exists():
                raise CtError(f"-P {name}={value}: no such file or folder")
        dimension = next((d for d in project.space.dimensions if d.name == name), None)
        if dimension is None or force:
            continue
        number = _number(name, value, dimension.kind)
        if not dimension.low <= number <= dimension.high:
            raise CtError(
                f"-P {name}={value}: outside the search space's {dimension.low:g}.."
                f"{dimension.high:g} (ct.yaml); give a value within it, or --force to train it"
            )


def check_target(target: Target) -> None:
    """A threshold that a bounded metric can reach."""
    metric = target.metric.lower()
    if any(word in metric for word in BOUNDED_METRICS) and not 0.0 <= target.threshold <= 1.0:
        raise CtError(
            f"target {target.describe()}: {target.metric} lies between 0 and 1; "
            "give a --threshold within it"
        )
    if (
        target.direction is Direction.MINIMIZE
        and any(word in metric for word in NON_NEGATIVE_METRICS)
        and target.threshold < 0
    ):
        raise CtError(
            f"target {target.describe()}: {target.metric} is never below 0; "
            "give a --threshold of 0 or more"
        )


def unlogged_metric(settings: Settings, project_name: str, metric: str, runs: int = 50) -> str:
    """A warning when the project's latest finished attempts (up to `runs`) never
    logged `metric`, naming the metrics they did log, closest names first; "" when
    one did, or there is no earlier run (nor a store: none is created for this)."""
    if missing_store(settings.tracking_uri) is not None:
        return ""
    client = Tracker(settings).client
    experiment = client.get_experiment_by_name(f"ct/{project_name}")
    if experiment is None:
        return ""
    earlier = client.search_runs(
        [experiment.experiment_id],
        f"tags.`{run_tags.KIND}` = 'attempt' and attributes.status = 'FINISHED'",
        max_results=runs,
        order_by=["attributes.start_time DESC"],
    )
    logged = {name for run in earlier for name in run.data.metrics}
    if not earlier or metric in logged:
        return ""

    def closeness(name: str) -> tuple[float, str]:
        return (-difflib.SequenceMatcher(None, metric.lower(), name.lower()).ratio(), name)

    names = sorted(logged, key=closeness)
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "") if names else "none"
    return (
        f"warning: the target metric {metric} was never logged by the {len(earlier)} "
        f"earlier finished run(s) of {project_name}; they logged: {shown}"
    )


def check_services(settings: Settings) -> None:
    """The Docker engine with CT_EXECUTION=docker; with a broker, Redis and an HTTP
    tracking server answer."""
    if settings.execution == "docker":
        from ct_service.execution.docker import engine

        engine()  # an InfrastructureError (a CtError) that says where it looked
    if not settings.embedded:
        import redis

        try:
            redis.Redis.from_url(settings.broker_url, socket_connect_timeout=5).ping()
        except redis.RedisError as error:
            raise CtError(
                f"CT_BROKER_URL: the broker does not answer ({type(error).__name__}); "
                "start Redis or unset CT_BROKER_URL to run here"
            ) from None
    if settings.tracking_uri.startswith(("http://", "https://")):
        import urllib.request

        try:
            with urllib.request.urlopen(settings.tracking_uri.rstrip("/") + "/health", timeout=5):
                pass
        except OSError as error:
            raise CtError(
                f"CT_TRACKING_URI={settings.tracking_uri}: the tracking server does not "
                f"answer ({error}); start it or point CT_TRACKING_URI at one"
            ) from None


def with_given_data(settings: Settings, given: Mapping[str, str]) -> Settings:
    """For a run typed by a person in Docker: the files and folders its `-P` values
    name are read-only data roots of this run too (they are the person's own)."""
    paths = tuple(
        os.path.realpath(v) for v in given.values() if os.path.isabs(v) and os.path.exists(v)
    )
    extra = tuple(p for p in paths if p not in settings.docker.data_dirs)
    if settings.execution == "local" or not extra:
        return settings
    return replace(
        settings, docker=replace(settings.docker, data_dirs=(*settings.docker.data_dirs, *extra))
    )


def _number(name: str, value: str, kind: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise CtError(f"-P {name}={value}: expected a number ({kind})") from None
    if not math.isfinite(number):
        raise CtError(f"-P {name}={value}: expected a finite number ({kind})")
    if kind == "int" and not number.is_integer():
        raise CtError(f"-P {name}={value}: expected a whole number")
    return number
