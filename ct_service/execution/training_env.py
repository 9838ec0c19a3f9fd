"""What a training process started on this machine inherits from the worker: an
allow-list of its environment variables, the tracking store, and this Python
environment's `python` first on PATH (MLflow runs the project's command with the
`python` it finds)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ct_service.settings import Settings

# What training inherits from the worker's environment, by name; nothing else (cloud
# credentials, repository secrets under other names, CT_* settings) reaches it.
# CT_TRAINING_ENV adds names.
TRAINING_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "TERM",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_CERT",
    # building a project's declared environment (env_manager.py)
    "MLFLOW_ENV_ROOT",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_CACHE_DIR",
    "UV_NATIVE_TLS",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
)


def training_environment(settings: Settings) -> dict[str, str]:
    """The variables of this process that training may see: TRAINING_ENV and the
    names in CT_TRAINING_ENV."""
    allowed = set(TRAINING_ENV) | set(settings.training_env)
    return {key: value for key, value in os.environ.items() if key in allowed}


def child_environment(settings: Settings) -> dict[str, str]:
    """The training process gets the tracking store and an allow-list of this
    process's variables (never the service's CT_* settings: they hold secrets).
    MLflow runs the project's command with `python` from PATH: make that ours."""
    env = training_environment(settings)
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    env["MLFLOW_REGISTRY_URI"] = settings.registry_uri
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(mlflow_pinned(settings))
    return env


def mlflow_pinned(settings: Settings) -> dict[str, str]:
    """Training that opens the service's database store itself (not a tracking
    server) must use this MLflow: a newer one migrates the store's schema, after
    which this one refuses it (MLflow 3.18 did so to 3.17's SQLite stores, through
    a project that declares `mlflow>=3.17`). So a project's declared environment is
    built with MLflow pinned to this version: uv and pip read the constraint file
    named by UV_CONSTRAINT and PIP_CONSTRAINT, kept in the user's cache folder (not
    CT_HOME: a refused run creates nothing there). An environment MLflow built
    before (under MLFLOW_ENV_ROOT, keyed by the declaration only) is reused as it is."""
    if settings.tracking_uri.startswith(("http://", "https://")):
        return {}
    import mlflow

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ct-service"
    pins = cache / f"mlflow-{mlflow.__version__}-constraints.txt"
    text = f"mlflow=={mlflow.__version__}\nmlflow-skinny=={mlflow.__version__}\n"
    if not pins.is_file() or pins.read_text() != text:
        cache.mkdir(parents=True, exist_ok=True)
        pins.write_text(text)
    return {"UV_CONSTRAINT": str(pins), "PIP_CONSTRAINT": str(pins)}
