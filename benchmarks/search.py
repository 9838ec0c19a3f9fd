"""Compute to target: ct-service's policy against the old rule, random search, TPE
and TPE with Hyperband, side by side in one run, on real LeNet training.

    python benchmarks/search.py --mnist ../shared/data/mnist [--seeds 5] [--smoke]

Each task starts every strategy from the same weak configuration (1 conv block of 4
filters, 1 epoch) with the same budgets (attempts, and sample-epochs: training
images x epochs). Search seed s is also the training seed of every attempt, and
the samplers' seed. The baselines train in this process through projects/lenet's
own code, sharing cached per-epoch curves (each request charged in full; --curves
keeps them between runs); `ct` runs real embedded pipelines (`ct-service run`, a
fresh store each), so its continuation, early stops and fixed costs act as in
production, and its compute is read back from the images and CPU time each attempt
run logged; `ct-replay` drives the same policy code on the shared curves (quick, for
trying a policy change on many seeds; `ct` is the measure). A search that has not
reached the target within the budgets has no compute to target (shown as a dash;
medians count it as infinite).

The defaults are the sizes measured in README (20,000 images of each data set,
Fashion-MNIST test_accuracy >= 0.88, MNIST >= 0.985): the issue's 0.90 and 0.99 are
out of reach of this space below about the full 60,000 images (at 30,000 no strategy
reached them within the default budgets), where one epoch of the larger networks
takes 10-45 s on 2 cores and the table several hours.

--smoke: one seed, a tiny subset, small budgets: checks only that every strategy
completes (CI runs it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from search_replay import ct_replay
from search_strategies import STRATEGIES, Budget, Outcome, Search, Task
from search_training import Trainer

from ct_service.project import load_project

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "projects" / "lenet"
FASHION = "/usr/share/datasets/fashion-mnist"
# The weak start: a network too small for either target, trained one epoch.
WEAK = {
    "conv_blocks": 1,
    "filters": 4,
    "dense_units": 84,
    "dropout": 0.0,
    "epochs": 1,
    "learning_rate": 0.001,
    "lr_decay": 0.0,
}
ORDER = ("old-rule", "random", "tpe", "tpe-hyperband", "ct", "ct-replay")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tasks = _tasks(args)
    project = load_project(LENET)
    rows: list[Outcome] = []
    started = time.perf_counter()
    trainers: dict[str, Trainer] = {}  # per data set: the tasks on it share curves
    for task in tasks:
        budget = Budget(args.attempts, args.epochs_budget * _fitted(task.samples))
        if task.dataset not in trainers:
            store = f"{args.curves}/{task.dataset}-{task.samples}.json" if args.curves else ""
            trainers[task.dataset] = Trainer(task.data, task.samples, store=store)
        trainer = trainers[task.dataset]
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for name in args.strategies:
                search = Search(trainer, task, seed, budget, name)
                if name == "ct":
                    outcome = ct_pipeline(task, seed, budget, args.smoke)
                elif name == "ct-replay":
                    outcome = ct_replay(search, WEAK, project)
                else:
                    outcome = STRATEGIES[name](search, WEAK, project.space)
                rows.append(outcome)
                _show(outcome)
    print(f"\nbenchmark wall time {time.perf_counter() - started:.0f} s\n")
    for task in tasks:
        print(_table(task, [r for r in rows if r.task == task.name], args))
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    missing = {n for n in args.strategies} - {r.strategy for r in rows}
    return 1 if missing else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--fashion", default=FASHION)
    parser.add_argument("--seeds", type=int, default=5, help="how many search seeds")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="the first of them (to split a long run)"
    )
    parser.add_argument("--attempts", type=int, default=12, help="attempt budget")
    parser.add_argument(
        "--epochs-budget",
        type=int,
        default=24,
        help="compute budget, in epochs of the task's training subset",
    )
    parser.add_argument("--fashion-samples", type=int, default=20000)
    parser.add_argument("--mnist-samples", type=int, default=20000)
    parser.add_argument(
        "--fashion-threshold", type=_thresholds, default=[0.88], help="one or more, by commas"
    )
    parser.add_argument("--mnist-threshold", type=_thresholds, default=[0.985])
    parser.add_argument("--tasks", default="fashion,mnist")
    parser.add_argument("--strategies", default=",".join(ORDER))
    parser.add_argument("--smoke", action="store_true", help="one seed, tiny: completes?")
    parser.add_argument("--json", default="", help="also write every search here")
    parser.add_argument(
        "--curves",
        default="",
        help="a folder where the baselines' measured curves are kept between runs "
        "(each still charged in full)",
    )
    return parser


def _tasks(args: argparse.Namespace) -> list[Task]:
    args.strategies = [s for s in args.strategies.split(",") if s]
    unknown = set(args.strategies) - set(ORDER)
    if unknown:
        sys.exit(f"unknown strategy {sorted(unknown)[0]!r}; choose from {', '.join(ORDER)}")
    if args.smoke:
        args.seeds, args.attempts, args.epochs_budget = 1, 2, 4
        args.fashion_samples = args.mnist_samples = 600
    found = []
    for name in args.tasks.split(","):
        if name not in ("fashion", "mnist"):
            sys.exit(f"unknown task {name!r}; choose from fashion, mnist")
        data = getattr(args, name)
        if not Path(data, "t10k-images-idx3-ubyte.gz").is_file():
            sys.exit(f"{name}: no data at {data} (make fashion-mnist; --mnist DIR)")
        samples = getattr(args, f"{name}_samples")
        thresholds = getattr(args, f"{name}_threshold")
        found += [Task(name, data, samples, threshold) for threshold in thresholds]
    if args.smoke:
        found = found[:1]
    return found


def _thresholds(text: str) -> list[float]:
    try:
        found = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"thresholds must be numbers, got {text!r}") from None
    if not all(0.0 < value < 1.0 for value in found):
        raise argparse.ArgumentTypeError(f"thresholds are accuracies in (0, 1), got {text!r}")
    return found


def _fitted(samples: int) -> int:
    return samples - max(1, int(round(samples * 0.1)))


def ct_pipeline(task: Task, seed: int, budget: Budget, smoke: bool) -> Outcome:
    """One embedded `ct-service run` from the weak start, in a fresh store."""
    outcome = Outcome("ct", task.name, seed)
    params = {**WEAK, "max_train_samples": task.samples, "data": task.data, "seed": seed}
    with tempfile.TemporaryDirectory(prefix="ct-search-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "MLFLOW_"))}
        env.update(CT_HOME=home, CT_EXECUTION="local", CT_WATCHDOG="off")
        command = [sys.executable, "-m", "ct_service.cli", "run", str(LENET), "--json"]
        command += [a for k, v in params.items() for a in ("-P", f"{k}={v}")]
        command += ["--threshold", str(task.threshold), "--max-attempts", str(budget.attempts)]
        command += ["--max-epochs", str(budget.sample_epochs // _fitted(task.samples))]
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
        outcome.wall_seconds = time.perf_counter() - started
        if done.returncode not in (0, 3):
            print(done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"ct-service run failed ({done.returncode})")
        _charge_attempts(outcome, home, task, budget)
    return outcome


def _charge_attempts(outcome: Outcome, home: str, task: Task, budget: Budget) -> None:
    """Read each attempt run's cost back from the pipeline's store, in order; the
    search reached the target if an attempt did within the budgets."""
    from ct_service.settings import Settings
    from ct_service.tracking import Tracker

    tracker = Tracker(Settings.from_env({"CT_HOME": home}))
    runs = tracker.client.search_runs(
        [e.experiment_id for e in tracker.client.search_experiments()],
        "tags.`ct.kind` = 'attempt'",
        order_by=["attributes.start_time ASC"],
    )
    for run in runs:
        metrics, tags = run.data.metrics, run.data.tags
        epochs = len(tracker.client.get_metric_history(run.info.run_id, "loss"))
        seen = int(metrics.get("train_samples_seen", epochs * _fitted(task.samples)))
        if outcome.reached:
            break
        outcome.attempts += 1
        outcome.sample_epochs += seen
        outcome.cpu_seconds += metrics.get("train_cpu_seconds", 0.0)
        test = metrics.get("test_accuracy", 0.0)
        config = json.loads(tags.get("ct.config", "{}"))
        shown = {k: config[k] for k in WEAK if k in config}
        stop = tags.get("ct.stopped_early", "").split(":")[0]
        note = f" (stopped: {stop})" if stop else ""
        if tags.get("ct.continues"):
            note += " (continued)"
        outcome.record(shown, epochs, test, note)
        within = outcome.attempts <= budget.attempts and outcome.sample_epochs <= (
            budget.sample_epochs
        )
        outcome.reached = within and test >= task.threshold


def _show(outcome: Outcome) -> None:
    verdict = "reached" if outcome.reached else "missed"
    print(
        f"{outcome.task} seed {outcome.seed} {outcome.strategy}: {verdict} after "
        f"{outcome.attempts} attempts, {outcome.sample_epochs:,} sample-epochs, "
        f"{outcome.cpu_seconds:.0f} CPU-s, best {outcome.best:.4f}",
        flush=True,
    )
    for line in outcome.trace:
        print(f"    {line}", flush=True)


def _table(task: Task, rows: list[Outcome], args: argparse.Namespace) -> str:
    """Medians over seeds (a search that missed counts as infinite compute), and each
    strategy's ratio to the old rule's median."""
    header = (
        f"{task.dataset}: test_accuracy >= {task.threshold:g}, {task.samples:,} images "
        f"({_fitted(task.samples):,} trained on), budgets {args.attempts} attempts and "
        f"{args.epochs_budget} epochs, {args.seeds} seeds\n"
        f"{'strategy':<14} {'reached':>8} {'sample-epochs':>14} {'x old':>6} "
        f"{'CPU-s':>7} {'x old':>6} {'attempts':>8} {'wall s':>7}"
    )
    medians: dict[str, dict[str, float]] = {}
    for name in args.strategies:
        mine = [r for r in rows if r.strategy == name]
        medians[name] = {
            "sample_epochs": _median([r.sample_epochs if r.reached else math.inf for r in mine]),
            "cpu": _median([r.cpu_seconds if r.reached else math.inf for r in mine]),
            "attempts": _median([r.attempts for r in mine]),
            "wall": _median([r.wall_seconds for r in mine]),
            "rate": sum(r.reached for r in mine) / max(1, len(mine)),
        }
    old = medians.get("old-rule", {})
    lines = [header]
    for name, m in medians.items():
        lines.append(
            f"{name:<14} {m['rate']:>8.0%} {_figure(m['sample_epochs']):>14} "
            f"{_ratio(m['sample_epochs'], old.get('sample_epochs')):>6} "
            f"{_figure(m['cpu']):>7} {_ratio(m['cpu'], old.get('cpu')):>6} "
            f"{m['attempts']:>8.1f} {m['wall']:>7.0f}"
        )
    return "\n".join(lines) + "\n"


def _median(values: list[Any]) -> float:
    return float(statistics.median(values)) if values else math.nan


def _figure(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:,.0f}"


def _ratio(value: float, old: float | None) -> str:
    if old is None or not math.isfinite(value):
        return "-"
    if not math.isfinite(old):
        return "<1"  # the old rule missed: any search that reached it did better
    return f"{value / old:.2f}"


if __name__ == "__main__":
    sys.exit(main())
