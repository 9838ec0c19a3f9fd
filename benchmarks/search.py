"""Compute to target: ct-service's policy against the old rule, random search, TPE
and TPE with Hyperband, side by side in one run, on real training.

    python benchmarks/search.py --mnist ../shared/data/mnist [--seeds 5] [--smoke]
    python benchmarks/search.py --suite [--half design|held-out|both] [--only NAME,...]
        [--seeds 3] [--first-seed K] [--curves DIR] [--json FILE] [--smoke]

--suite runs the task suite of benchmarks/search_suite.py (issue #30: MNIST,
Fashion-MNIST, scikit-learn's digits and diabetes; a design half and a held-out half
fixed in commit 505704d), each task from its own start with its own target (metric,
threshold, direction) and budgets, and prints per task every strategy's success rate,
median compute to target, its ratio to the best baseline and to the oracle, then how
ct did on each half. Without --suite, the tasks come from the flags below (LeNet only).

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
completes (CI runs it); with --suite, one small task per data set.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import optuna
import search_table
from search_learners import PROJECTS, learner
from search_pipeline import ct_pipeline
from search_replay import ct_replay
from search_strategies import STRATEGIES, Budget, Outcome, Search
from search_suite import DESIGN, HELD_OUT, TASKS, WEAK, SuiteTask
from search_training import Trainer

from ct_service.project import load_project

ROOT = Path(__file__).resolve().parent.parent
FASHION = "/usr/share/datasets/fashion-mnist"
ORDER = ("old-rule", "random", "tpe", "tpe-hyperband", "ct", "ct-replay")
# replays of ct's rounds of 3 attempts at once (CT_PARALLEL_ATTEMPTS=3): with successive
# halving (the default) and without it (the rule set's proposal and TPE's beside it);
# asked for by name with --strategies, not run by default
ROUNDS = {"ct-replay-rounds": True, "ct-replay-rounds-plain": False}
ROUND_SLOTS = 3
# --suite --smoke: one task per data set, tiny (LeNet images, epochs budget)
SMOKE = {"fashion": (600, 4), "mnist": (600, 4), "digits": (0, 0), "diabetes": (0, 60)}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tasks = _suite(args) if args.suite else _tasks(args)
    outcomes: list[Outcome] = []
    trainers: dict[tuple[str, int], Trainer] = {}  # the tasks on one data set share curves
    started = time.perf_counter()
    for task in tasks:
        trainer = _trainer(trainers, task, args)
        per_epoch = trainer.learner.cost(task.start)
        budget = Budget(task.attempts, task.epochs_budget * per_epoch)
        project = load_project(PROJECTS[task.dataset])
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for name in args.strategies:
                search = Search(trainer, task, seed, budget, name)
                if name == "ct":
                    data = getattr(args, task.dataset, "")
                    outcome = ct_pipeline(task, seed, budget, trainer.learner, data)
                elif name == "ct-replay":
                    outcome = ct_replay(search, project)
                elif name in ROUNDS:
                    outcome = ct_replay(search, project, ROUND_SLOTS, halving=ROUNDS[name])
                else:
                    outcome = STRATEGIES[name](search, project.space)
                trainer.save()
                outcomes.append(outcome)
                _show(outcome, trainer.learner.unit)
    print(f"\nbenchmark wall time {time.perf_counter() - started:.0f} s\n")
    found, oracles = {}, {}
    for task in tasks:
        trainer = _trainer(trainers, task, args)
        mine = [r for r in outcomes if r.task == task.name]
        found[task.name] = search_table.rows(mine, args.strategies)
        oracles[task.name] = search_table.oracle(task, mine, trainer)
        unit = trainer.learner.unit
        print(search_table.task_table(task, found[task.name], oracles[task.name], args.seeds, unit))
    if args.suite:
        print(f"The design/held-out split was fixed in commit {search_table.SPLIT_COMMIT}.")
        for half in (DESIGN, HELD_OUT):
            for name in ("ct", "ct-replay", *ROUNDS):
                if name in args.strategies and any(t.half == half for t in tasks):
                    print(search_table.summary(tasks, found, oracles, half, name), end="")
    if args.json:
        kept = {"outcomes": [r.__dict__ for r in outcomes], "oracles": oracles}
        Path(args.json).write_text(json.dumps(kept, indent=1))
    missing = set(args.strategies) - {r.strategy for r in outcomes}
    return 1 if missing else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="store_true", help="run the task suite (issue #30)")
    parser.add_argument(
        "--half", choices=(DESIGN, HELD_OUT, "both"), default="both", help="with --suite"
    )
    parser.add_argument("--only", default="", help="with --suite: these tasks, by commas")
    parser.add_argument("--mnist", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--fashion", default=FASHION)
    parser.add_argument("--seeds", type=int, default=5, help="how many search seeds")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="the first of them (to split a long run)"
    )
    parser.add_argument("--attempts", type=int, default=12, help="attempt budget (no --suite)")
    parser.add_argument(
        "--epochs-budget",
        type=int,
        default=24,
        help="compute budget, in epochs of the task's training subset (no --suite)",
    )
    parser.add_argument("--fashion-samples", type=int, default=20000)
    parser.add_argument("--mnist-samples", type=int, default=20000)
    parser.add_argument(
        "--fashion-threshold", type=_thresholds, default=[0.88], help="one or more, by commas"
    )
    parser.add_argument("--mnist-threshold", type=_thresholds, default=[0.985])
    parser.add_argument("--tasks", default="fashion,mnist", help="without --suite")
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


def _strategies(args: argparse.Namespace) -> None:
    args.strategies = [s for s in args.strategies.split(",") if s]
    known = (*ORDER, *ROUNDS)
    unknown = set(args.strategies) - set(known)
    if unknown:
        sys.exit(f"unknown strategy {sorted(unknown)[0]!r}; choose from {', '.join(known)}")


def _suite(args: argparse.Namespace) -> list[SuiteTask]:
    """The suite's tasks that --half and --only choose (--smoke: one tiny per data set)."""
    _strategies(args)
    chosen = [t for t in TASKS if args.half in ("both", t.half)]
    if args.only:
        names = [n for n in args.only.split(",") if n]
        unknown = set(names) - {t.name for t in TASKS}
        if unknown:
            known = ", ".join(t.name for t in TASKS)
            sys.exit(f"no task {sorted(unknown)[0]!r} in the suite; it has: {known}")
        chosen = [t for t in chosen if t.name in names]
    if args.smoke:
        args.seeds = 1
        firsts = {t.dataset: t for t in reversed(chosen)}
        chosen = [
            replace(t, samples=SMOKE[t.dataset][0], attempts=2, epochs_budget=SMOKE[t.dataset][1])
            for t in chosen
            if firsts[t.dataset] is t
        ]
    for task in chosen:
        _check_data(task.dataset, args)
    if not chosen:
        sys.exit("no task chosen")
    return chosen


def _tasks(args: argparse.Namespace) -> list[SuiteTask]:
    """The flag-driven LeNet tasks (without --suite)."""
    _strategies(args)
    if args.smoke:
        args.seeds, args.attempts, args.epochs_budget = 1, 2, 4
        args.fashion_samples = args.mnist_samples = 600
    found = []
    for name in args.tasks.split(","):
        if name not in ("fashion", "mnist"):
            sys.exit(f"unknown task {name!r}; choose from fashion, mnist")
        _check_data(name, args)
        samples = getattr(args, f"{name}_samples")
        found += [
            SuiteTask(
                f"{name}>={threshold:g}",
                "",
                name,
                samples,
                WEAK,
                "test_accuracy",
                threshold,
                True,
                args.attempts,
                args.epochs_budget,
            )  # fmt: skip
            for threshold in getattr(args, f"{name}_threshold")
        ]
    return found[:1] if args.smoke else found


def _check_data(dataset: str, args: argparse.Namespace) -> None:
    if dataset in ("fashion", "mnist"):
        data = getattr(args, dataset)
        if not Path(data, "t10k-images-idx3-ubyte.gz").is_file():
            sys.exit(f"{dataset}: no data at {data} (make fashion-mnist; --mnist DIR)")


def _trainer(trainers: dict, task: SuiteTask, args: argparse.Namespace) -> Trainer:
    key = (task.dataset, task.samples)
    if key not in trainers:
        store = f"{args.curves}/{task.dataset}-{task.samples}.json" if args.curves else ""
        data = getattr(args, task.dataset, "")
        trainers[key] = Trainer(learner(task.dataset, data, task.samples), store=store)
    return trainers[key]


def _thresholds(text: str) -> list[float]:
    try:
        found = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"thresholds must be numbers, got {text!r}") from None
    if not all(0.0 < value < 1.0 for value in found):
        raise argparse.ArgumentTypeError(f"thresholds are accuracies in (0, 1), got {text!r}")
    return found


def _show(outcome: Outcome, unit: str) -> None:
    verdict = "reached" if outcome.reached else "missed"
    best = "-" if math.isnan(outcome.best) else f"{outcome.best:.4f}"
    print(
        f"{outcome.task} seed {outcome.seed} {outcome.strategy}: {verdict} after "
        f"{outcome.attempts} attempts, {outcome.compute:,} {unit}, "
        f"{outcome.cpu_seconds:.0f} CPU-s, best {best}",
        flush=True,
    )
    for line in outcome.trace:
        print(f"    {line}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
