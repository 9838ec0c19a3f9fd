"""What the gateway lets a training process ask of the tracking server: its own
attempt run, and nothing else. Pure: a grant and a request in, None (admitted) or
the one-line reason it is refused out; gateway.py does the I/O.

A training process may log metrics, parameters, inputs, outputs and tags outside
the service's namespace on its own run, end that run, upload artifacts under it,
create logged models of its own run in its own experiment and finish them; it may
read its own run and the runs it continues (their checkpoints). A search of logged
models (MLflow's artifact downloads make one beside every download) is answered with
its own run's models only (scoped_model_search, visible_models). Everything else is
refused: other runs (its pipeline's among them), tags the service decides from
(`ct.*`, and MLflow's own run structure), experiments, the model registry, new runs
or experiments, traces, users and permissions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

API = "/api/2.0/mlflow/"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
SERVICE_TAG_PREFIX = "ct."  # run_tags: the service's own names, control state among them
# MLflow's tags that say what a run is part of; a run that rewrites them could pass
# itself off as another pipeline's attempt in the UI and in searches.
STRUCTURE_TAGS = frozenset({"mlflow.parentRunId", "mlflow.rootRunId", "mlflow.user"})

# Writes on the run named in the body ("run_id", or MLflow 1's "run_uuid").
RUN_WRITES = frozenset(
    {
        "runs/log-metric",
        "runs/log-parameter",
        "runs/set-tag",
        "runs/delete-tag",
        "runs/log-batch",
        "runs/log-model",
        "runs/log-inputs",
        "runs/outputs",
        "runs/update",
    }
)
# Reads of a run named in the query string.
RUN_READS = frozenset(
    {"runs/get", "artifacts/list", "metrics/get-history", "metrics/get-history-bulk-interval"}
)
# Reads of the server's health and capabilities (no data); MLflow 3's artifact client
# asks /api/3.0/.../server-info whether multipart transfers are on before it transfers.
HEALTH = frozenset(
    {"/health", "/version", "/api/2.0/mlflow/server-info", "/api/3.0/mlflow/server-info"}
)
MODEL_SEARCH = API + "logged-models/search"  # answered by the gateway, never forwarded as is


@dataclass
class Grant:
    """One attempt's access, for as long as its process trains."""

    run_id: str
    experiment_id: str
    readable_runs: frozenset[str]  # its own run and the runs whose checkpoints it loads
    # artifact paths (as the artifact proxy names them) it may write, and only read
    writable_paths: set[str] = field(default_factory=set)
    readable_paths: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)  # logged models it created
    refused: list[str] = field(default_factory=list)  # why calls were refused, the first few

    def add_model(self, model_id: str, artifact_path: str) -> None:
        self.models.add(model_id)
        if artifact_path:
            self.writable_paths.add(artifact_path)


def admit(
    grant: Grant, method: str, path: str, query: dict[str, list[str]], body: Any
) -> str | None:
    """None when `grant` may make this call; else why not. `body` is the parsed JSON
    body of a REST call (None for artifact transfers and GETs)."""
    if path in HEALTH:
        return None if method == "GET" else f"{method} {path} is not allowed"
    if path == ARTIFACTS_API or path.startswith(ARTIFACTS_API + "/"):
        return _artifacts(grant, method, path, query)
    if not path.startswith(API):
        return f"{path} is not an MLflow tracking call a training run needs"
    call = path.removeprefix(API)
    if call in RUN_READS and method == "GET":
        run = _one(query, "run_id") or _one(query, "run_uuid")
        return None if run in grant.readable_runs else _other_run(run)
    if call in RUN_WRITES and method == "POST":
        return _run_write(grant, call, body if isinstance(body, dict) else {})
    if call == "experiments/get" and method == "GET":
        found = _one(query, "experiment_id")
        return None if found == grant.experiment_id else f"experiment {found} is not its own"
    if call == "logged-models" and method == "POST":
        return _new_model(grant, body if isinstance(body, dict) else {})
    if call.startswith("logged-models/"):
        return _model_call(grant, method, call.removeprefix("logged-models/"), body)
    return f"{method} {path} is not allowed to training code (only its own attempt run)"


def _run_write(grant: Grant, call: str, body: dict[str, Any]) -> str | None:
    run = str(body.get("run_id") or body.get("run_uuid") or "")
    if run != grant.run_id:
        return _other_run(run)
    keys: list[str] = []
    if call in ("runs/set-tag", "runs/delete-tag"):
        keys = [str(body.get("key", ""))]
    elif call == "runs/log-batch":
        keys = [str(tag.get("key", "")) for tag in body.get("tags") or [] if isinstance(tag, dict)]
    for key in keys:
        refused = _tag(key)
        if refused:
            return refused
    return None


def _tag(key: str) -> str | None:
    if key.startswith(SERVICE_TAG_PREFIX):
        return f"tag {key!r} is the service's (ct.*): training code may not set it"
    if key in STRUCTURE_TAGS:
        return f"tag {key!r} says what the run belongs to: training code may not set it"
    return None


def _new_model(grant: Grant, body: dict[str, Any]) -> str | None:
    if str(body.get("experiment_id", "")) != grant.experiment_id:
        return f"a logged model in experiment {body.get('experiment_id')} is not its own"
    if str(body.get("source_run_id", "")) != grant.run_id:
        return "a logged model must name its own run as source_run_id"
    return None


def _model_call(grant: Grant, method: str, rest: str, body: Any) -> str | None:
    if rest == "search":
        return None if method == "POST" else f"{method} on a logged-models search is not allowed"
    model_id, _, tail = rest.partition("/")
    if model_id not in grant.models:
        return f"logged model {model_id} is not one its run created"
    if method == "DELETE" and not tail:
        return "deleting a logged model is not allowed to training code"
    if tail.startswith("tags") and isinstance(body, dict):
        for tag in body.get("tags") or []:
            if isinstance(tag, dict) and _tag(str(tag.get("key", ""))):
                return _tag(str(tag.get("key", "")))
    return None


def scoped_model_search(grant: Grant, body: Any) -> dict[str, Any] | None:
    """Training code's logged-models search as the gateway asks it of the tracking
    server: in its own experiment, for models of its own run only. None when nothing
    could be visible (it created no model, or asked about other experiments only):
    the answer is then empty and the tracking server is not asked."""
    body = body if isinstance(body, dict) else {}
    asked = body.get("experiment_ids")
    if not grant.models or not isinstance(asked, list):
        return None
    if grant.experiment_id not in [str(experiment) for experiment in asked]:
        return None
    passed = ("datasets", "max_results", "order_by", "page_token")  # narrow or page, only
    scoped = {key: body[key] for key in passed if body.get(key) is not None}
    own = f"source_run_id = '{grant.run_id}'"
    wanted = body.get("filter")
    scoped["experiment_ids"] = [grant.experiment_id]
    scoped["filter"] = f"{wanted} AND {own}" if isinstance(wanted, str) and wanted.strip() else own
    return scoped


def visible_models(grant: Grant, answer: Any) -> dict[str, Any]:
    """The tracking server's answer to a scoped search, less any model the run did
    not create (the filter already keeps them out; this does not rely on it)."""
    answer = answer if isinstance(answer, dict) else {}
    found = answer.get("models")
    kept = [
        model
        for model in (found if isinstance(found, list) else [])
        if isinstance(model, dict)
        and isinstance(model.get("info"), dict)
        and str(model["info"].get("model_id", "")) in grant.models
    ]
    visible: dict[str, Any] = {"models": kept}
    if isinstance(answer.get("next_page_token"), str) and answer["next_page_token"]:
        visible["next_page_token"] = answer["next_page_token"]
    return visible


def _artifacts(grant: Grant, method: str, path: str, query: dict[str, list[str]]) -> str | None:
    """Uploads (PUT) under its own run's or models' artifact folders; downloads and
    listings (GET) there and under the runs it continues."""
    target = path.removeprefix(ARTIFACTS_API).strip("/") or (_one(query, "path") or "").strip("/")
    if ".." in target.split("/"):
        return f"artifact path {target!r} climbs out of its folder"
    if method == "PUT":
        allowed = grant.writable_paths
    elif method == "GET":
        allowed = grant.writable_paths | grant.readable_paths
    else:
        return f"{method} on artifacts is not allowed to training code"
    if any(target == root or target.startswith(root + "/") for root in allowed if root):
        return None
    return f"artifact path {target!r} is outside its own run's artifacts"


def artifact_path(uri: str) -> str:
    """The artifact proxy's path for an `mlflow-artifacts:` URI (with or without a
    host); "" for a URI the proxy does not serve (a local folder, a bucket)."""
    if not uri.startswith("mlflow-artifacts:"):
        return ""
    rest = uri.removeprefix("mlflow-artifacts:")
    if rest.startswith("//"):
        rest = "/" + rest[2:].partition("/")[2]
    return rest.strip("/")


def _one(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name) or [""]
    return values[0]


def _other_run(run: str) -> str:
    return f"run {run or '(none)'} is not the attempt's own run"
