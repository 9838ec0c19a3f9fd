"""One measured run of `benchmarks/scale.py`: N workers on one broker and one tracking
store, a batch of pipelines of the sleep project, timed from the first pipeline
created to the last one finished; and what the run spent, read from the workers'
step lines (ct_service/counters.py), the broker's own counters and MLflow.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from scale_stack import ROOT, Redis, Store, service_env, start_workers, stop_all, wait

from ct_service.counters import Count, StepRecord

SLEEP = ROOT / "benchmarks" / "projects" / "sleep"
RUN_ATTEMPT = "ct.train.run_attempt"


def load() -> float:
    """The machine's 1-minute load average (what `uptime` prints first)."""
    return os.getloadavg()[0]


@dataclass
class Measured:
    """What one run measured."""

    store: str
    workers: int
    parallel: int
    pipelines: int
    wall: float
    load_before: float
    load_after: float
    outcomes: list[str]
    attempts: int
    epochs: int  # epochs trained over every attempt
    rounds: int
    sleep_seconds: float  # epochs x the sleep per epoch: the "training"
    steps: list[StepRecord] = field(default_factory=list)
    broker_commands: int = 0
    broker_seconds: float = 0.0
    cpu_seconds: float = 0.0  # of every process the run started (PostgreSQL's not)
    tail_seconds: float = 0.0  # worker time after each worker's last step: no work left
    # summed over attempts, from the attempts' own clocks in MLflow (see _read)
    launch_seconds: float = 0.0
    logging_seconds: float = 0.0
    model_seconds: float = 0.0

    @property
    def per_hour(self) -> float:
        return self.pipelines / self.wall * 3600

    def spent(self, kind: str) -> Count:
        calls = sum(s.counts[kind].calls for s in self.steps if kind in s.counts)
        seconds = sum(s.counts[kind].seconds for s in self.steps if kind in s.counts)
        return Count(calls, seconds)

    def took(self, attempts: bool) -> tuple[int, float]:
        """Steps (training ones, or the others) and their seconds."""
        chosen = [s for s in self.steps if (s.task == RUN_ATTEMPT) == attempts]
        return len(chosen), sum(s.took for s in chosen)


def measure(
    redis: Redis,
    store_kind: str,
    workers: int,
    pipelines: int,
    folder: Path,
    params: dict[str, str],
    settings_env: dict[str, str],
    parallel: int = 1,
) -> Measured:
    """Start the store and `workers` workers, create `pipelines` pipelines of the sleep
    project with `params`, wait for every one to finish; what it took."""
    from ct_service.orchestration import pipeline
    from ct_service.orchestration.queue import enqueue, make_celery
    from ct_service.settings import Settings
    from ct_service.tracking import Tracker

    folder.mkdir(parents=True)
    cpu_before = children_cpu()
    store = Store(store_kind, folder / "store").start()
    redis.reset()
    env = service_env(
        CT_BROKER_URL=redis.url,
        CT_PARALLEL_ATTEMPTS=str(parallel),
        **settings_env,
        **store.env,
    )
    settings = Settings.from_env(env | {"CT_HOME": str(folder / "client")})
    tracker = Tracker(settings)
    experiment = tracker.experiment_id("sleep")  # the store's tables exist before the clock
    services = start_workers(workers, env, folder)
    try:
        app = make_celery(settings)
        load_before = load()
        started = time.time()
        ids = []
        for _ in range(pipelines):
            ids.append(pipeline.create(settings, str(SLEEP), params))
            enqueue(app, pipeline.Task.START, ids[-1])
        query = "tags.`ct.kind` = 'pipeline' and tags.`ct.status` = 'finished'"

        def finished() -> bool:
            return len(tracker.client.search_runs([experiment], query)) == pipelines

        # seldom: a poll is a request to the store measured (the end is MLflow's clock)
        wait(finished, 3600, "every pipeline to finish", folder / "worker-1.log", every=2.0)
        ended = max(tracker.client.get_run(i).info.end_time or 0 for i in ids) / 1000
        load_after = load()
        wait(lambda: _attempts_ended(tracker, ids), 300, "every attempt to end", every=1.0)
        measured = _read(tracker, ids, float(params["epoch_seconds"]))
        steps = [s for w in services for s in w.steps() if s.at >= started - 1]
        tail = sum(
            max(0.0, ended - max((s.at + s.took for s in w.steps()), default=started))
            for w in services
            if w.ready == b"ready."
        )
        broker_commands, broker_seconds = redis.commands()
    finally:
        stop_all(services)
        store.stop()
    return Measured(
        cpu_seconds=children_cpu() - cpu_before,
        tail_seconds=tail,
        store=store_kind,
        workers=workers,
        parallel=parallel,
        pipelines=pipelines,
        wall=ended - started,
        load_before=load_before,
        load_after=load_after,
        steps=steps,
        broker_commands=broker_commands,
        broker_seconds=broker_seconds,
        **measured,
    )


def children_cpu() -> float:
    """CPU seconds of this process's ended children and theirs (each waited for)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _attempts_ended(tracker, ids: list[str]) -> bool:
    """Attempts asked to stop (a round's winner was promoted) end after their epoch."""
    for pipeline_id in ids:
        for run in tracker.attempt_runs(tracker.pipeline(pipeline_id)):
            if run.info.status == "RUNNING":
                return False
    return True


def _read(tracker, ids: list[str], epoch_seconds: float) -> dict:
    outcomes, attempts, epochs, rounds = [], 0, 0, 0
    launch = logging = model = 0.0
    for pipeline_id in ids:
        found = tracker.pipeline(pipeline_id)
        outcomes.append(found.outcome)
        runs = tracker.attempt_runs(found)
        attempts += len({r.data.tags.get("ct.attempt") for r in runs})
        for run in runs:
            history = tracker.client.get_metric_history(run.info.run_id, "val_accuracy")
            epochs += len(history)
            tags = run.data.tags
            if history and "ct.started" in tags and "sleep.started" in tags and run.info.end_time:
                # ct.started: the worker launches it; sleep.started: the training runs;
                # each epoch: the sleep, then its metrics, checkpoint, tag and stop check;
                # after the last epoch: the test metric and the model logged, the run ended
                began, trained = float(tags["ct.started"]), float(tags["sleep.started"])
                last = max(m.timestamp for m in history) / 1000
                launch += trained - began
                logging += last - trained - len(history) * epoch_seconds
                model += run.info.end_time / 1000 - last
            # each decision that trained opened a round; the first attempt opened one
            rounds += run.data.tags.get("ct.decision", "").startswith("train ")
        rounds += 1
    return {
        "outcomes": outcomes,
        "attempts": attempts,
        "epochs": epochs,
        "rounds": rounds,
        "sleep_seconds": epochs * epoch_seconds,
        "launch_seconds": launch,
        "logging_seconds": logging,
        "model_seconds": model,
    }


def describe(run: Measured, linear: float | None) -> list[str]:
    """Where the run's time went, a few lines."""
    busy_capacity = run.workers * run.wall
    attempts, attempt_seconds = run.took(attempts=True)
    others, other_seconds = run.took(attempts=False)
    reads, writes = run.spent("mlflow.read"), run.spent("mlflow.write")
    redis, publish = run.spent("redis"), run.spent("publish")
    lost, lock = run.spent("claim.lost"), run.spent("lock.store")
    ratio = f"; {linear:.2f}x linear" if linear is not None else ""
    other_mean = other_seconds / others if others else 0.0

    def ms(count: Count) -> str:
        return f"{count.seconds / count.calls * 1000:.1f} ms" if count.calls else "-"

    return [
        f"{run.store}, {run.workers} worker(s): {run.pipelines} pipelines ({run.attempts} attempts,"
        f" {run.epochs} epochs) in {run.wall:.1f} s = {run.per_hour:.1f} pipelines/h{ratio};"
        f" load {run.load_before:.2f} -> {run.load_after:.2f}",
        f"  worker time: training sleeps {run.sleep_seconds / busy_capacity:.0%}, rest of the"
        f" {attempts} attempt steps {(attempt_seconds - run.sleep_seconds) / busy_capacity:.0%}"
        f" ({(attempt_seconds - run.sleep_seconds) / max(1, attempts):.1f} s each: launch, the"
        f" training's own MLflow calls, its model), {others} other steps"
        f" {other_seconds / busy_capacity:.0%} ({other_mean:.2f} s each), idle"
        f" {1 - (attempt_seconds + other_seconds) / busy_capacity:.0%} (after a worker's"
        f" last step, no work left: {run.tail_seconds / busy_capacity:.0%})",
        f"  each attempt: launch {run.launch_seconds / max(1, run.attempts):.2f} s, the training's"
        f" per-epoch logging {run.logging_seconds / max(1, run.epochs):.2f} s an epoch, its test"
        f" metric and model {run.model_seconds / max(1, run.attempts):.2f} s (their clocks)",
        f"  MLflow (the service's calls): {reads.calls} reads at {ms(reads)}, {writes.calls} writes"
        f" at {ms(writes)}; {(reads.seconds + writes.seconds) / max(1, run.pipelines):.2f} s per"
        " pipeline",
        f"  broker: {redis.calls} service round trips at {ms(redis)}, {publish.calls} publishes at"
        f" {ms(publish)}; the server ran {run.broker_commands} commands"
        f" ({run.broker_seconds * 1000:.0f} ms in the server), Celery's polling included",
        f"  locks: {lost.calls} claims lost, {lock.seconds:.2f} s waiting for a new store's lock",
        f"  CPU: {run.cpu_seconds:.0f} s in the run's processes (workers, training, beat, the"
        f" MLflow server; PostgreSQL's not): {run.cpu_seconds / run.pipelines:.1f} s per pipeline,"
        f" {run.cpu_seconds / run.wall:.2f} of the {os.cpu_count()} cores on average",
    ]


def median_steps(run: Measured, task: str) -> float:
    took = [s.took for s in run.steps if s.task == task]
    return statistics.median(took) if took else 0.0
