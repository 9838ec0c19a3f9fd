"""The search benchmark's `ct` strategy: one real embedded `ct-service run` of the
task's project from the task's start, in a fresh store, with the task's target and
budgets; its compute is read back from what each attempt run logged (images seen,
CPU time) or, for digits, from its boosting stages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from search_learners import PROJECTS, ROOT
from search_strategies import Budget, Outcome, reaches
from search_suite import SuiteTask


def ct_pipeline(task: SuiteTask, seed: int, budget: Budget, learner: Any, data: str) -> Outcome:
    """One embedded `ct-service run` from the task's start, in a fresh store.
    `data`: LeNet's images (MNIST or Fashion-MNIST folder), else unused."""
    outcome = Outcome("ct", task.name, seed)
    params: dict[str, Any] = {**task.start, "seed": seed}
    if task.dataset in ("mnist", "fashion"):
        params.update(max_train_samples=task.samples, data=data)
    per_epoch = learner.cost(task.start)
    with tempfile.TemporaryDirectory(prefix="ct-search-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "MLFLOW_"))}
        # local: the venv's own Python for every project (digits pins an older
        # scikit-learn, which would otherwise be built; the baselines use this one too)
        env.update(CT_HOME=home, CT_EXECUTION="local", CT_WATCHDOG="off", CT_ENV_MANAGER="local")
        project = PROJECTS[task.dataset]
        command = [sys.executable, "-m", "ct_service.cli", "run", str(project), "--json"]
        command += [a for k, v in params.items() for a in ("-P", f"{k}={v}")]
        command += ["--target-metric", task.metric, "--threshold", str(task.threshold)]
        command += ["--direction", "maximize" if task.maximize else "minimize"]
        command += ["--max-attempts", str(budget.attempts)]
        if budget.compute:
            command += ["--max-epochs", str(budget.compute // per_epoch)]
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
        outcome.wall_seconds = time.perf_counter() - started
        if done.returncode not in (0, 3):
            print(done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"ct-service run failed ({done.returncode})")
        _charge_attempts(outcome, home, task, budget, learner)
    return outcome


def _charge_attempts(
    outcome: Outcome, home: str, task: SuiteTask, budget: Budget, learner: Any
) -> None:
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
        config = json.loads(tags.get("ct.config", "{}"))
        if learner.epochs_name:
            epochs = len(tracker.client.get_metric_history(run.info.run_id, "loss"))
            seen = int(metrics.get("train_samples_seen", epochs * learner.cost(config)))
        else:  # one fit: its boosting stages
            epochs, seen = 1, learner.cost({**task.start, **config})
        if outcome.reached:
            break
        outcome.attempts += 1
        outcome.compute += seen
        outcome.cpu_seconds += metrics.get("train_cpu_seconds", 0.0)
        test = metrics.get(task.metric, float("nan"))
        shown = {k: config[k] for k in task.start if k in config}
        stop = tags.get("ct.stopped_early", "").split(":")[0]
        note = f" (stopped: {stop})" if stop else ""
        if tags.get("ct.continues"):
            note += " (continued)"
        outcome.record(task, shown, epochs, test, note)
        within = outcome.attempts <= budget.attempts and (
            not budget.compute or outcome.compute <= budget.compute
        )
        outcome.reached = within and reaches(task, test)
