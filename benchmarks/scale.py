"""How ct-service scales on one broker and one tracking store: pipelines per hour
against worker processes, wall time to the target against parallel attempts, and the
latency from a push to the first epoch, with a project whose training sleeps.

The project (benchmarks/projects/sleep) sleeps through each epoch and logs what a
real one logs (per-epoch curves, a checkpoint per epoch, the test metric, a small
model), so what is measured is the service: its steps, MLflow, the broker.

  throughput  1, 2, 4 and 8 `ct-service worker` processes (and a beat) on one Redis
              and one store, 2 pipelines per worker, each 3 attempts (a target out of
              reach, a budget of 3); once on a SQLite file every process opens, once
              on PostgreSQL behind an `mlflow server`. Each run's pipelines/h, its
              ratio to linear (per worker, against 1 worker), and where the time went:
              the workers' step lines (each step's MLflow calls, Redis round trips,
              publishes, lost claims: ct_service/counters.py) and the broker's own
              command count.
  parallel    one pipeline that must search (target 0.85: attempt 6 reaches it one
              at a time) with CT_PARALLEL_ATTEMPTS 1, 2 and 4 and as many workers: wall
              time to the target, attempts, rounds, attempts per round, and the compute
              charged (epochs trained, asked-to-stop ones included).
  latency     a signed push to the webhook (gunicorn) until the attempt's first
              epoch is logged, caches warm, one worker, by phase (scale_latency.py).

    python benchmarks/scale.py [--stores sqlite,postgres] [--workers 1,2,4,8]
        [--epochs 3 --epoch-seconds 6] [--parts throughput,parallel,latency]
    python benchmarks/scale.py --smoke     # 1 and 2 workers, short pipelines (~1.5 min)

Each run prints the machine's load average beside it: the machine has 2 cores and
other work may share them; every worker, the store and the broker run on it too.
"""

from __future__ import annotations

import argparse
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scale_runs import Measured, describe, load, measure
from scale_stack import ROOT, Redis

STORES = ("sqlite", "postgres")


def throughput(args, redis: Redis, folder: Path) -> dict[tuple[str, int], Measured]:
    """Each store, each worker count: 2 pipelines per worker, 3 attempts each."""
    params = {"epochs": str(args.epochs), "epoch_seconds": str(args.epoch_seconds)}
    settings = {"CT_MAX_ATTEMPTS": "3", "CT_TARGET_THRESHOLD": "0.99"}  # out of reach
    runs: dict[tuple[str, int], Measured] = {}
    for store in args.stores:
        for workers in args.workers:
            run = measure(
                redis,
                store,
                workers,
                args.pipelines_per_worker * workers,
                folder / f"{store}-{workers}",
                params,
                settings,
            )
            runs[store, workers] = run
            one = runs.get((store, args.workers[0]))
            linear = run.per_hour / (one.per_hour / one.workers * workers) if one else None
            print("\n".join(describe(run, linear)), flush=True)
            if (
                any(o != "budget-exhausted" for o in run.outcomes)
                or run.attempts != 3 * run.pipelines
            ):
                raise SystemExit(f"a pipeline did not train its 3 attempts: {run.outcomes}")
    return runs


def parallel(args, redis: Redis, folder: Path) -> list[Measured]:
    """One pipeline that searches, with K attempts at once on K workers."""
    params = {"epochs": "2", "epoch_seconds": str(args.epoch_seconds)}
    settings = {"CT_MAX_ATTEMPTS": "12", "CT_TARGET_THRESHOLD": str(args.threshold)}
    runs = []
    for k in args.parallel:
        run = measure(
            redis, args.stores[-1], k, 1, folder / f"parallel-{k}", params, settings, parallel=k
        )
        runs.append(run)
        print(
            f"parallel {k}: {run.outcomes[0]} in {run.wall:.1f} s, {run.attempts} attempts in"
            f" {run.rounds} rounds, {run.epochs} epochs; load {run.load_before:.2f} ->"
            f" {run.load_after:.2f}",
            flush=True,
        )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,postgres", help="sqlite and/or postgres")
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts")
    parser.add_argument("--pipelines-per-worker", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each attempt asked for")
    parser.add_argument("--epoch-seconds", type=float, default=6.0, help="the sleep per epoch")
    parser.add_argument("--parallel", default="1,2,4", help="CT_PARALLEL_ATTEMPTS values")
    parser.add_argument("--threshold", type=float, default=0.85, help="the parallel target")
    parser.add_argument("--pushes", type=int, default=3, help="measured pushes (latency)")
    parser.add_argument(
        "--push-interval",
        type=float,
        default=10.0,
        help="seconds from a pipeline's end to the next push",
    )
    parser.add_argument(
        "--execution",
        choices=("local", "docker"),
        default="local",
        help="where the latency part's pushes train (docker: `make docker-base` first)",
    )
    parser.add_argument("--parts", default="throughput,parallel,latency")
    parser.add_argument("--smoke", action="store_true", help="1 and 2 workers, short pipelines")
    args = parser.parse_args()
    # stopped, it still stops what it started (workers, servers, the database)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.smoke:
        args.stores, args.workers, args.parallel, args.parts = (
            "sqlite",
            "1,2",
            "2",
            "throughput,latency",
        )
        args.pipelines_per_worker, args.epochs, args.epoch_seconds, args.pushes = 1, 1, 0.5, 1
        args.push_interval = 1.0
    args.stores = [s for s in args.stores.split(",") if s]
    if set(args.stores) - set(STORES):
        raise SystemExit(f"--stores: sqlite and/or postgres, not {args.stores}")
    args.workers = [int(n) for n in args.workers.split(",")]
    args.parallel = [int(n) for n in args.parallel.split(",")]
    parts = args.parts.split(",")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, commit {commit}, {platform.machine()}"
        f" {_cores()} cores, load {load():.2f}; sleep {args.epoch_seconds:g} s per epoch",
        flush=True,
    )
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        redis = Redis(folder)
        try:
            runs = throughput(args, redis, folder) if "throughput" in parts else {}
            rounds = parallel(args, redis, folder) if "parallel" in parts else []
            latency = None
            if "latency" in parts:
                from scale_latency import measure_latency

                latency = measure_latency(args, redis, folder / "latency")
        finally:
            redis.stop()
    print(f"\nbenchmark wall time {time.monotonic() - began:.0f} s")
    if runs:
        print_throughput(args, runs)
    if rounds:
        print_parallel(rounds)
    if latency is not None:
        print(latency.table())


def print_throughput(args, runs: dict[tuple[str, int], Measured]) -> None:
    print(
        f"\npipelines per hour ({args.pipelines_per_worker} pipelines per worker, 3 attempts"
        f" of {args.epochs} x {args.epoch_seconds:g} s asked for each)"
    )
    print(f"{'store':9} {'workers':>7} {'pipelines':>9} {'wall s':>7} {'per hour':>9}"
          f" {'x linear':>8} {'busy':>5} {'cores':>5} {'load':>11}")  # fmt: skip
    for (store, workers), run in runs.items():
        one = runs[store, args.workers[0]]
        linear = run.per_hour / (one.per_hour / one.workers * workers)
        attempt_seconds, other_seconds = run.took(True)[1], run.took(False)[1]
        busy = (attempt_seconds + other_seconds) / (run.workers * run.wall)
        print(
            f"{store:9} {workers:7d} {run.pipelines:9d} {run.wall:7.1f} {run.per_hour:9.1f}"
            f" {linear:8.2f} {busy:5.0%} {run.cpu_seconds / run.wall:5.2f}"
            f" {run.load_before:5.2f}-{run.load_after:<5.2f}"
        )


def print_parallel(runs: list[Measured]) -> None:
    print("\nwall time to the target, one pipeline (store: " + runs[0].store + ")")
    print(f"{'parallel':>8} {'outcome':>10} {'wall s':>7} {'attempts':>8} {'rounds':>6}"
          f" {'per round':>9} {'epochs':>6} {'load':>11}")  # fmt: skip
    for run in runs:
        print(
            f"{run.parallel:8d} {run.outcomes[0]:>10} {run.wall:7.1f} {run.attempts:8d}"
            f" {run.rounds:6d} {run.attempts / run.rounds:9.1f} {run.epochs:6d}"
            f" {run.load_before:5.2f}-{run.load_after:<5.2f}"
        )


def _cores() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
