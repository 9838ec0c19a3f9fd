"""One typed settings object, read from CT_* environment variables once at start.

Every value is validated; a bad one raises SettingsError naming the variable.
With nothing set, everything runs embedded: SQLite tracking and registry, local
artifacts, local training and an in-process Celery worker.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from ct_service.exceptions import SettingsError
from ct_service.target import Budget, Direction, Target

URL_PASSWORD = re.compile(r"(://[^/?#@:]*):[^/?#]*@")  # the password of user:password@

T = TypeVar("T")
EXECUTIONS = ("local", "docker", "auto")
ENV_MANAGERS = ("auto", "local", "virtualenv", "uv", "conda")
SMTP_SECURITY = ("none", "starttls", "ssl")


@dataclass(frozen=True)
class SmtpSettings:
    host: str = ""  # empty = e-mail disabled
    port: int = 25
    security: str = "none"
    user: str = ""
    password: str = field(default="", repr=False)
    sender: str = "ct-service@localhost"
    recipients: tuple[str, ...] = ()
    timeout_seconds: float = 30.0
    ca_file: str = ""  # a private CA for the server's certificate; empty = system CAs

    @property
    def enabled(self) -> bool:
        return bool(self.host and self.recipients)


@dataclass(frozen=True)
class DockerSettings:
    """How attempts run in containers (CT_EXECUTION=docker, or auto with an engine)."""

    network: str = ""  # the containers' network: empty = ct-service's internal ct-attempts
    build_network: str = ""  # the network image builds use (to reach the package index)
    base_image: str = ""  # BASE_IMAGE build argument; empty = the Dockerfile's default
    ca_file: str = ""  # a CA bundle given to image builds as ca.crt (TLS-intercepting proxy)
    cpus: str = ""  # --cpus, e.g. "2"
    memory: str = ""  # --memory, e.g. "4g"; empty = half the host's memory
    pids: int = 4096  # --pids-limit: processes and threads a container may run
    gpus: str = ""  # --gpus, e.g. "all"
    environments_file: str = ""  # framework -> image table (see environment.py)
    # The operator's data roots: a parameter naming a path under one of them is mounted
    # read-only; no other host path is ever mounted (CT_DATA_DIRS, ':'-separated).
    data_dirs: tuple[str, ...] = ()
    # The tracking server account the worker's gateway forwards training's calls with
    # (CT_TRAINING_TRACKING_*): the worker lets it edit the runs of the experiments it
    # trains, nothing else. Empty: the worker's own (the gateway admits only the
    # attempt's own run either way; this adds the server's own check).
    training_username: str = ""
    training_password: str = field(default="", repr=False)

    @property
    def training_account(self) -> bool:
        return bool(self.training_username and self.training_password)


@dataclass(frozen=True)
class RecoverySettings:
    """How dead attempts are noticed and resumed (see lease.py and watchdog.py)."""

    watchdog_enabled: bool = True  # the kill-switch: False makes every scan a no-op
    watchdog_interval_seconds: float = 30.0
    heartbeat_seconds: float = 10.0
    lease_seconds: float = 90.0  # no heartbeat for this long: the attempt is dead
    max_resumes: int = 3  # per attempt; past that it fails and the policy decides
    work_retention_seconds: float = 24 * 3600.0  # stale work folders older than this go

    def __post_init__(self) -> None:
        if self.lease_seconds < 3 * self.heartbeat_seconds:
            raise SettingsError(
                "CT_LEASE_SECONDS must be at least 3 x CT_HEARTBEAT_SECONDS, so that one "
                f"late heartbeat is not a death; got {self.lease_seconds:g} and "
                f"{self.heartbeat_seconds:g}"
            )


@dataclass(frozen=True)
class DataSettings:
    """Declared data sources (docs/data.md): the S3-compatible store the service reads
    with its own keys (training never holds them), and how often sources are checked."""

    s3_endpoint: str = ""  # CT_DATA_S3_ENDPOINT; empty = AWS's
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = field(default="", repr=False)
    buckets: tuple[str, ...] = ()  # CT_DATA_BUCKETS: the buckets a ct.yaml may name
    cache_dir: str = ""  # CT_DATA_CACHE: fetched objects and versions; empty = CT_HOME/data
    scan_seconds: float = 300.0  # CT_DATA_SCAN_SECONDS: beat checks sources this often; 0 = never
    hook_secret: str = field(default="", repr=False)  # CT_DATA_HOOK_SECRET: signs POST /hooks/data
    # CT_DECAY_SCHEDULE: how often beat has production scored on the newest data: seconds
    # ("3600"), or five cron fields ("0 4 * * *", UTC); "0" = never
    decay_schedule: str = "3600"
    decay_tolerance: float = 0.02  # CT_DECAY_TOLERANCE: worse than promoted by more: decayed

    @property
    def decay_seconds(self) -> float | None:
        """The decay watch's interval; None when decay_schedule is a cron expression."""
        try:
            return float(self.decay_schedule)
        except ValueError:
            return None


@dataclass(frozen=True)
class Settings:
    home: Path = Path(".ct-service")
    tracking_uri: str = ""
    registry_uri: str = ""
    artifact_root: str = ""
    # The service's own tracking server account (CT_TRACKING_USERNAME/_PASSWORD[_FILE]),
    # handed to MLflow's client as MLFLOW_TRACKING_USERNAME/_PASSWORD (tracking.py).
    tracking_username: str = ""
    tracking_password: str = field(default="", repr=False)
    broker_url: str = field(default="", repr=False)  # empty = embedded; may hold a password
    execution: str = "local"
    env_manager: str = "auto"  # local execution: the project's environment (env_manager.py)
    target: Target = Target()
    target_set: bool = False  # a CT_TARGET_* variable is set: it wins over a ct.yaml target
    budget: Budget = Budget()
    attempt_timeout_seconds: float = 7200.0
    # Celery's hard time limit on a host-side step (intake, start, decide, promote,
    # notify, resume, the watchdog's scan); its soft limit, 90% of it, fails the
    # pipeline with that reason. Training has its own (training_time_limit_seconds).
    step_time_limit_seconds: float = 300.0
    # A spare launcher with the project's libraries imported waits this long for the
    # next attempt (local execution, spares.py); 0 = none, every attempt starts cold.
    warm_launcher_seconds: float = 600.0
    parallel_attempts: int = 1  # attempts of one pipeline trained at once (policy.decide_several)
    model_name: str = ""  # empty = the project's name
    ui_url: str = ""
    smtp: SmtpSettings = SmtpSettings()
    notify_webhook_url: str = field(default="", repr=False)  # chat webhook URLs carry their token
    notify_webhook_timeout_seconds: float = 10.0
    log_level: str = "INFO"
    repositories_file: str = ""  # the webhook's allow-list (see repositories.py)
    # A CA bundle trusted for git hosts' status APIs besides the system's (a self-hosted
    # GitLab or Gitea with a private CA); verification is never turned off.
    status_ca_file: str = ""
    webhook_insecure: bool = False  # accept unsigned pushes: local development only
    git_allow_file: bool = False  # allow file:// and local-path repositories (tests, demos)
    api_token: str = field(default="", repr=False)  # bearer token of GET /pipelines*
    trust_pushed_code: bool = False  # run pushed code outside a container (CT_EXECUTION=local)
    training_env: tuple[str, ...] = ()  # more variable names training may inherit
    webhook_max_body_bytes: int = 5 * 1024 * 1024
    webhook_body_seconds: float = 10.0  # a push body not in by then gets 408 (slow clients)
    recovery: RecoverySettings = RecoverySettings()
    docker: DockerSettings = DockerSettings()
    data: DataSettings = DataSettings()

    def __post_init__(self) -> None:
        home = self.home.resolve()
        object.__setattr__(self, "home", home)
        if not self.tracking_uri:
            object.__setattr__(self, "tracking_uri", f"sqlite:///{home / 'mlflow.db'}")
        if not self.registry_uri:
            object.__setattr__(self, "registry_uri", self.tracking_uri)
        if not self.artifact_root and not self.tracking_uri.startswith(("http://", "https://")):
            # A tracking server decides where artifacts go; a local store keeps them here.
            object.__setattr__(self, "artifact_root", (home / "artifacts").as_uri())

    @property
    def embedded(self) -> bool:
        return not self.broker_url

    @property
    def step_soft_time_limit_seconds(self) -> float:
        """Past this a host-side step is interrupted (SoftTimeLimitExceeded) and its
        pipeline fails; the hard limit kills the step's process a little later."""
        return self.step_time_limit_seconds * 0.9

    @property
    def training_time_limit_seconds(self) -> float:
        """Celery's hard limit on the training step: a minute before the broker would
        hand its message to another worker. The executor stops training itself at
        CT_ATTEMPT_TIMEOUT_SECONDS; this is the backstop for a step stuck around it
        (readying the environment, recording the result)."""
        return self.visibility_timeout_seconds - 60.0

    @property
    def visibility_timeout_seconds(self) -> int:
        """Longer than the longest allowed attempt, so a running attempt is never redelivered."""
        return int(self.attempt_timeout_seconds * 1.5) + 600

    def ui_command(self) -> str:
        """The command that opens the MLflow UI on this store. A store URI that holds
        a password is not written out (it would be on the screen, then on a command
        line): the command takes it from CT_TRACKING_URI through the environment."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"open {_without_password(self.tracking_uri)}"
        if _password_in(self.tracking_uri) or _password_in(self.registry_uri):
            return (
                'MLFLOW_BACKEND_STORE_URI="$CT_TRACKING_URI" '
                'MLFLOW_REGISTRY_STORE_URI="${CT_REGISTRY_URI:-$CT_TRACKING_URI}" '
                "mlflow ui --port 5000"
            )
        return (
            f"mlflow ui --backend-store-uri {self.tracking_uri} "
            f"--registry-store-uri {self.registry_uri} --port 5000"
        )

    def ui_base(self) -> str:
        if self.ui_url:
            return self.ui_url.rstrip("/")
        if self.tracking_uri.startswith(("http://", "https://")):
            return self.tracking_uri.rstrip("/")
        return "http://127.0.0.1:5000"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _Env(os.environ if environ is None else environ)
        return cls(
            home=Path(env.text("CT_HOME", ".ct-service")),
            tracking_uri=env.text("CT_TRACKING_URI", ""),
            registry_uri=env.text("CT_REGISTRY_URI", ""),
            artifact_root=env.text("CT_ARTIFACT_ROOT", ""),
            tracking_username=env.text("CT_TRACKING_USERNAME", ""),
            tracking_password=env.secret("CT_TRACKING_PASSWORD"),
            broker_url=_broker_url(env),
            execution=env.choice("CT_EXECUTION", "local", EXECUTIONS),
            env_manager=env.choice("CT_ENV_MANAGER", "auto", ENV_MANAGERS),
            target=_target(env),
            target_set=any(env.environ.get(name, "").strip() for name in TARGET_VARIABLES),
            budget=Budget(
                env.number("CT_MAX_ATTEMPTS", 5, int, low=1),
                env.number("CT_MAX_WALL_SECONDS", 0.0, float, low=0),
                env.number("CT_MAX_EPOCHS", 0, int, low=0),
            ),
            attempt_timeout_seconds=env.number("CT_ATTEMPT_TIMEOUT_SECONDS", 7200.0, float, low=1),
            step_time_limit_seconds=env.number(
                "CT_STEP_TIME_LIMIT_SECONDS", 300.0, float, low=10, high=24 * 3600
            ),
            warm_launcher_seconds=env.number("CT_WARM_LAUNCHER_SECONDS", 600.0, float, low=0),
            parallel_attempts=env.number("CT_PARALLEL_ATTEMPTS", 1, int, low=1, high=64),
            model_name=env.text("CT_MODEL_NAME", ""),
            smtp=_smtp(env),
            ui_url=env.url("CT_UI_URL", ("http://", "https://")),
            notify_webhook_url=env.url(
                "CT_NOTIFY_WEBHOOK_URL", ("http://", "https://"), secret=True
            ),
            notify_webhook_timeout_seconds=env.number(
                "CT_NOTIFY_WEBHOOK_TIMEOUT_SECONDS", 10.0, float, low=0.1
            ),
            log_level=env.choice("CT_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
            repositories_file=env.existing_file("CT_REPOSITORIES_FILE"),
            status_ca_file=env.existing_file("CT_STATUS_CA_FILE"),
            webhook_insecure=env.choice("CT_WEBHOOK_INSECURE", "0", ("0", "1")) == "1",
            git_allow_file=env.choice("CT_GIT_ALLOW_FILE", "0", ("0", "1")) == "1",
            api_token=env.secret("CT_API_TOKEN"),
            trust_pushed_code=env.choice("CT_TRUST_PUSHED_CODE", "0", ("0", "1")) == "1",
            training_env=tuple(
                n.strip() for n in env.text("CT_TRAINING_ENV", "").split(",") if n.strip()
            ),
            webhook_max_body_bytes=env.number(
                "CT_WEBHOOK_MAX_BODY_BYTES", 5 * 1024 * 1024, int, low=1024
            ),
            webhook_body_seconds=env.number(
                "CT_WEBHOOK_BODY_SECONDS", 10.0, float, low=0.1, high=600
            ),
            docker=_docker(env),
            recovery=_recovery(env),
            data=_data(env),
        )


class _Env:
    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def text(self, name: str, default: str) -> str:
        return self.environ.get(name, "").strip() or default

    def secret(self, name: str) -> str:
        """A secret from NAME, or from the file named by NAME_FILE (Docker secrets)."""
        if self.environ.get(name):
            return self.environ[name]
        path = self.environ.get(name + "_FILE", "").strip()
        if not path:
            return ""
        try:
            return Path(path).read_text().strip()
        except OSError as error:
            raise SettingsError(f"{name}_FILE: cannot read {path}: {error.strerror}") from None

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        normal = value.upper() if default.isupper() else value.lower()
        if normal not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        return normal

    def number(
        self,
        name: str,
        default: T,
        kind: Callable[[str], T],
        low: float | None = None,
        high: float | None = None,
    ) -> T:
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = kind(raw)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise SettingsError(f"{name} must be {noun}; got {raw!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):  # type: ignore[operator]
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise SettingsError(f"{name} must be {bounds}; got {raw!r}")
        return value

    def url(self, name: str, schemes: tuple[str, ...], secret: bool = False) -> str:
        value = self.secret(name) if secret else self.text(name, "")
        if value and not value.startswith(schemes):
            shown = "" if secret else f"; got {value!r}"
            raise SettingsError(f"{name} must start with {' or '.join(schemes)}{shown}")
        return value

    def existing_file(self, name: str) -> str:
        path = self.text(name, "")
        if path and not Path(path).is_file():
            raise SettingsError(f"{name}: no such file {path!r}")
        return path

    def directories(self, name: str) -> tuple[str, ...]:
        """':'-separated existing absolute directories, each resolved (symlinks followed)."""
        found = []
        for entry in (e.strip() for e in self.text(name, "").split(":")):
            if not entry:
                continue
            if not os.path.isabs(entry) or not Path(entry).is_dir():
                raise SettingsError(f"{name}: {entry!r} is not an existing absolute directory")
            found.append(os.path.realpath(entry))
        return tuple(found)

    def addresses(self, name: str) -> tuple[str, ...]:
        addresses = tuple(a.strip() for a in self.text(name, "").split(",") if a.strip())
        for address in addresses:
            if "@" not in address:
                raise SettingsError(
                    f"{name} must be comma-separated e-mail addresses; got {address!r}"
                )
        return addresses


TARGET_VARIABLES = ("CT_TARGET_METRIC", "CT_TARGET_THRESHOLD", "CT_TARGET_DIRECTION")


def _target(env: _Env) -> Target:
    try:
        return Target(
            env.text("CT_TARGET_METRIC", "test_accuracy"),
            env.number("CT_TARGET_THRESHOLD", 0.8, float),
            Direction(env.choice("CT_TARGET_DIRECTION", "maximize", ("maximize", "minimize"))),
        )
    except ValueError as error:
        raise SettingsError(f"CT_TARGET_*: {error}") from None


def _smtp(env: _Env) -> SmtpSettings:
    security = env.choice("CT_SMTP_SECURITY", "none", SMTP_SECURITY)
    if env.text("CT_SMTP_USER", "") and security == "none":
        raise SettingsError(
            "CT_SMTP_USER: logging in would send the password in plain text; "
            "set CT_SMTP_SECURITY=starttls or ssl"
        )
    default_port = {"none": 25, "starttls": 587, "ssl": 465}[security]
    return SmtpSettings(
        host=env.text("CT_SMTP_HOST", ""),
        port=env.number("CT_SMTP_PORT", default_port, int, low=1, high=65535),
        security=security,
        user=env.text("CT_SMTP_USER", ""),
        password=env.secret("CT_SMTP_PASSWORD"),
        sender=env.text("CT_MAIL_FROM", "ct-service@localhost"),
        recipients=env.addresses("CT_MAIL_TO"),
        timeout_seconds=env.number("CT_SMTP_TIMEOUT_SECONDS", 30.0, float, low=0.1),
        ca_file=env.existing_file("CT_SMTP_CA_FILE"),
    )


def _docker(env: _Env) -> DockerSettings:
    return DockerSettings(
        network=env.text("CT_DOCKER_NETWORK", ""),
        build_network=env.text("CT_DOCKER_BUILD_NETWORK", ""),
        base_image=env.text("CT_DOCKER_BASE_IMAGE", ""),
        ca_file=env.existing_file("CT_DOCKER_CA_FILE"),
        cpus=env.text("CT_DOCKER_CPUS", ""),
        memory=env.text("CT_DOCKER_MEMORY", ""),
        pids=env.number("CT_DOCKER_PIDS", 4096, int, low=16),
        gpus=env.text("CT_DOCKER_GPUS", ""),
        environments_file=env.existing_file("CT_ENVIRONMENTS_FILE"),
        data_dirs=env.directories("CT_DATA_DIRS"),
        training_username=env.text("CT_TRAINING_TRACKING_USERNAME", ""),
        training_password=env.secret("CT_TRAINING_TRACKING_PASSWORD"),
    )


def _data(env: _Env) -> DataSettings:
    buckets = tuple(b.strip() for b in env.text("CT_DATA_BUCKETS", "").split(",") if b.strip())
    return DataSettings(
        s3_endpoint=env.url("CT_DATA_S3_ENDPOINT", ("http://", "https://")),
        s3_region=env.text("CT_DATA_S3_REGION", "us-east-1"),
        s3_access_key_id=env.text("CT_DATA_S3_ACCESS_KEY_ID", ""),
        s3_secret_access_key=env.secret("CT_DATA_S3_SECRET_ACCESS_KEY"),
        buckets=buckets,
        cache_dir=env.text("CT_DATA_CACHE", ""),
        scan_seconds=env.number("CT_DATA_SCAN_SECONDS", 300.0, float, low=0),
        hook_secret=env.secret("CT_DATA_HOOK_SECRET"),
        decay_schedule=_decay_schedule(env),
        decay_tolerance=env.number("CT_DECAY_TOLERANCE", 0.02, float, low=0),
    )


def _decay_schedule(env: _Env) -> str:
    """Seconds (0: off) or five cron fields; Celery's crontab reads the fields when
    beat starts (orchestration/queue.py), naming this variable if it refuses them."""
    value = env.text("CT_DECAY_SCHEDULE", "3600")
    fields = value.split()
    if len(fields) == 5:
        return " ".join(fields)
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if len(fields) != 1 or not math.isfinite(seconds) or seconds < 0:
        raise SettingsError(
            "CT_DECAY_SCHEDULE must be seconds (0: never) or five cron fields "
            f"(minute hour day-of-month month day-of-week); got {value!r}"
        )
    return value


def _broker_url(env: _Env) -> str:
    """CT_BROKER_URL, with CT_BROKER_PASSWORD[_FILE] (a Docker secret) put in as its
    password, so that the password is written in neither the compose file nor a URL."""
    url = env.url("CT_BROKER_URL", ("redis://", "rediss://", "memory://"))
    password = env.secret("CT_BROKER_PASSWORD")
    if not password:
        return url
    scheme, _, rest = url.partition("://")
    if not url or scheme == "memory" or "@" in rest.split("/", 1)[0]:
        raise SettingsError(
            "CT_BROKER_PASSWORD needs a redis:// or rediss:// CT_BROKER_URL without credentials"
        )
    return f"{scheme}://:{quote(password, safe='')}@{rest}"


def _recovery(env: _Env) -> RecoverySettings:
    return RecoverySettings(
        watchdog_enabled=env.choice("CT_WATCHDOG", "on", ("on", "off")) == "on",
        watchdog_interval_seconds=env.number("CT_WATCHDOG_INTERVAL_SECONDS", 30.0, float, low=0.5),
        heartbeat_seconds=env.number("CT_HEARTBEAT_SECONDS", 10.0, float, low=0.2),
        lease_seconds=env.number("CT_LEASE_SECONDS", 90.0, float, low=1),
        max_resumes=env.number("CT_MAX_RESUMES", 3, int, low=0),
        work_retention_seconds=env.number("CT_WORK_RETENTION_SECONDS", 24 * 3600.0, float, low=60),
    )


def _password_in(uri: str) -> bool:
    """Whether a URI holds a password: user:password@ or a password= option."""
    return bool(URL_PASSWORD.search(uri)) or "password=" in uri.lower()


def _without_password(url: str) -> str:
    return URL_PASSWORD.sub(r"\1:***@", url)
