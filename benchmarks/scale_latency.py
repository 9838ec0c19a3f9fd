"""`benchmarks/scale.py`'s latency part: from a signed push to the webhook until the
attempt's first epoch is logged, phase by phase, with every cache warm.

The stack: the webhook under gunicorn (its production settings), one `ct-service
worker` (Redis mode; `--execution local` runs the pushed code on the worker,
CT_TRUST_PUSHED_CODE=1, `--execution docker` in its container as a deployment does,
the base image `make docker-base` builds), the store of the throughput runs, and a git repository
served over file:// holding the sleep project. One push first warms everything (the
worker's imports and store connections, the spare launcher the next attempt takes);
then each measured push is a new commit of the project's code, sent once the
previous pipeline has ended and the spare has had `--push-interval` seconds to import
its libraries (pushes do not arrive back to back).

Phases, each read off a clock the service keeps (the workers' step lines, the
attempt's tags in MLflow, the training's first metric) or the sender's own:
  answer       POST sent -> 202 received
  intake       202 -> the intake step ended (the push's MLflow run created)
  fetch        git's commands in the start step (the commit fetched and checked out)
  start        intake ended -> the start step ended, less the fetch (the queue hop,
               the project read at its commit, the attempt's run created)
  attempt step start ended -> the attempt marked running (ct.started: the queue hop,
               the claim, the environment chosen, the stop rule read)
  launch       ct.started -> the training process started (sleep.started: the spare
               launcher takes the attempt, MLflow's run started in it); in Docker, the
               container start
  first epoch  sleep.started -> the first epoch's metrics logged (the sleep, then a
               metric call)
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
from scale_runs import SLEEP, load
from scale_stack import ROOT, Redis, Service, Store, free_port, service_env, wait

from ct_service.webhook.push import Provider, sign

SECRET = "scale-benchmark-secret"
EXECUTION = {
    "local": {"CT_TRUST_PUSHED_CODE": "1"},  # pushes train on the worker
    "docker": {  # pushes train in their container, as deployed; the offline base image
        "CT_EXECUTION": "docker",
        "CT_DOCKER_BASE_IMAGE": "ct-base:bookworm",
        "CT_DOCKER_BUILD_NETWORK": "host",  # this machine's engine runs without NAT
        "CT_DOCKER_CA_FILE": "/etc/ssl/certs/ca-certificates.crt",
    },
}
PHASES = ("answer", "intake", "fetch", "start", "attempt step", "launch", "first epoch")


@dataclass
class Latency:
    store: str
    execution: str
    epoch_seconds: float
    pushes: list[dict[str, float]]
    loads: list[float]

    def table(self) -> str:
        rows = [
            f"\npush -> first epoch, one worker, caches warm ({self.store} store,"
            f" {self.execution} execution, first epoch sleeps {self.epoch_seconds:g} s;"
            f" load {min(self.loads):.2f}-"
            f"{max(self.loads):.2f})",
            f"{'phase':14} {'median s':>8}   each push",
        ]
        for phase in (*PHASES, "total", "before training"):
            values = [p[phase] for p in self.pushes]
            each = " ".join(f"{v:6.2f}" for v in values)
            rows.append(f"{phase:14} {statistics.median(values):8.2f}   {each}")
        return "\n".join(rows)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def repository(folder: Path, epoch_seconds: float, execution: str) -> Path:
    """A git repository with the sleep project at models/sleep, 2 epochs by default; for
    Docker it declares its one dependency (its container's image is built from it once,
    by the warming push)."""
    repo = folder / "repo"
    project = repo / "models" / "sleep"
    shutil.copytree(SLEEP, project, ignore=shutil.ignore_patterns("__pycache__"))
    if execution == "docker":
        (project / "requirements.txt").write_text(f"mlflow=={mlflow.__version__}\n")
    mlproject = project / "MLproject"
    text = mlproject.read_text()
    text = text.replace("epoch_seconds: {type: float, default: 2.0}",
                        f"epoch_seconds: {{type: float, default: {epoch_seconds}}}")  # fmt: skip
    mlproject.write_text(text)
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "Bench")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "the sleep project")
    return repo


def push(repo: Path, port: int, number: int) -> tuple[str, float, float]:
    """Commit a change to the project's code and deliver its push; the push id the
    webhook answered, when it was sent and when the answer came."""
    before = git(repo, "rev-parse", "HEAD")
    with open(repo / "models" / "sleep" / "train.py", "a") as code:
        code.write(f"# push {number}\n")
    git(repo, "commit", "-q", "-am", f"push {number}")
    after = git(repo, "rev-parse", "HEAD")
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "before": before,
            "after": after,
            "repository": {"full_name": "bench/models"},
            "commits": [
                {"id": after, "added": [], "modified": ["models/sleep/train.py"], "removed": []}
            ],
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        **sign(Provider.GITHUB, body, SECRET),
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks", data=body, headers=headers, method="POST"
    )
    sent = time.time()
    with urllib.request.urlopen(request, timeout=30) as answer:
        answered = time.time()
        assert answer.status == 202, answer.status
        return json.loads(answer.read())["pipeline_id"], sent, answered


def measure_latency(args, redis: Redis, folder: Path) -> Latency:
    from ct_service.settings import Settings
    from ct_service.tracking import PipelineStatus, Tracker

    folder.mkdir(parents=True)
    epoch_seconds = min(args.epoch_seconds, 2.0)
    repo = repository(folder, epoch_seconds, args.execution)
    allow_list = folder / "repositories.yaml"
    allow_list.write_text(
        "repositories:\n  - {name: bench/models, provider: github, url: '"
        + repo.as_uri()
        + "', secret_env: BENCH_SECRET, project: models/sleep, target: {threshold: 0.0}}\n"
    )
    store = Store(args.stores[-1], folder / "store").start()
    redis.reset()
    env = service_env(
        CT_BROKER_URL=redis.url,
        CT_REPOSITORIES_FILE=str(allow_list),
        CT_GIT_ALLOW_FILE="1",  # the repository is served over file://
        CT_MAX_ATTEMPTS="1",
        BENCH_SECRET=SECRET,
        **store.env,
        **EXECUTION[args.execution],
    )
    tracker = Tracker(Settings.from_env(env | {"CT_HOME": str(folder / "client")}))
    tracker.experiment_id("sleep")  # the store's tables, before anything is timed
    port = free_port()
    webhook = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:ct_service.webhook.gunicorn_conf",
         "-b", f"127.0.0.1:{port}"],
        env=env | {"CT_HOME": str(folder / "webhook")}, cwd=ROOT,
        stdout=(folder / "webhook.log").open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    worker = Service("worker", env | {"CT_HOME": str(folder / "worker")}, folder / "worker.log")
    try:
        worker.wait_ready()
        wait(lambda: _answers(port), 60, "the webhook", folder / "webhook.log")
        pushes, loads = [], []
        for number in range(args.pushes + 1):  # the first one warms the caches
            push_id, sent, answered = push(repo, port, number)

            def finished(push_id=push_id):
                try:
                    return tracker.pipeline(push_id).status is PipelineStatus.FINISHED
                except Exception:  # its run is not created yet
                    return False

            wait(finished, 300, f"push {number}'s pipeline", folder / "worker.log", every=1.0)
            if number:
                pushes.append(_phases(tracker, worker, push_id, sent, answered))
                loads.append(load())
            time.sleep(args.push_interval)  # pacing the pushes, not waiting for a state
    finally:
        worker.stop()
        webhook.terminate()
        webhook.wait(timeout=30)
        store.stop()
    return Latency(store.kind, args.execution, epoch_seconds, pushes, loads)


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def _phases(tracker, worker: Service, push_id: str, sent: float, answered: float) -> dict:
    found = tracker.pipeline(push_id)
    [attempt] = tracker.attempt_runs(found)
    steps = worker.steps()
    intake = next(s for s in steps if s.task == "ct.pipeline.intake" and s.at >= sent - 0.5)
    start = next(s for s in steps if s.task == "ct.pipeline.start" and s.args == (found.id,))
    intake_end, start_end = intake.at + intake.took, start.at + start.took
    fetch = start.counts["git"].seconds if "git" in start.counts else 0.0
    tags = attempt.data.tags
    if "sleep.started" not in tags:  # it never trained: say why rather than a KeyError
        raise SystemExit(f"push {push_id}'s attempt did not train: {found.reason}")
    began = float(tags["ct.started"])
    trained = float(tags["sleep.started"])
    history = tracker.client.get_metric_history(attempt.info.run_id, "val_accuracy")
    first_epoch = min(m.timestamp for m in history) / 1000
    phases = {
        "answer": answered - sent,
        "intake": intake_end - answered,
        "fetch": fetch,
        "start": start_end - intake_end - fetch,
        "attempt step": began - start_end,
        "launch": trained - began,
        "first epoch": first_epoch - trained,
        "total": first_epoch - sent,
    }
    phases["before training"] = phases["total"] - phases["first epoch"]
    return phases
