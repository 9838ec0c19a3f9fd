"""Where a one-attempt pipeline's seconds go (`overhead.py --breakdown`), beside a
direct `train.py` run of the same configuration, both read off the clocks MLflow
already keeps: when each run was created, when each epoch was logged, when each run
ended, when the model version was created. Nothing in the service is instrumented
for it, so the figures describe the code as it runs in production.

Phases of the pipeline (embedded `ct-service run`):
  cli+start      process start -> the pipeline's run created (imports, settings,
                 in-process worker, the start step's MLflow round trips)
  attempt        pipeline run -> the attempt's run created (the start step)
  launch+load    attempt run -> its first epoch logged, less one epoch of training:
                 launcher, MLflow Projects, the training process's imports and data
  epochs         first epoch logged, plus one epoch -> last epoch logged (training)
  evaluate+log   last epoch -> the attempt run ended (test metrics, model logged)
  decide+register  attempt ended -> model version created
  promote+notify   model version -> the pipeline run ended
  summary+exit   pipeline ended -> the process exits
The direct run has the same phases from "launch+load" on, without the service's;
a pipeline in Docker (--docker) the pipeline's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Clocks:
    """Seconds since the process started, of each moment MLflow recorded."""

    run_created: float  # the run that trained (direct: its run; pipeline: the attempt's)
    first_epoch: float
    last_epoch: float
    run_ended: float
    exited: float
    epochs: int
    pipeline_created: float | None = None
    version_created: float | None = None
    pipeline_ended: float | None = None

    @property
    def epoch_seconds(self) -> float:
        return (self.last_epoch - self.first_epoch) / max(1, self.epochs - 1)


def measure(command: list[str], store: Path, env: dict[str, str]) -> Clocks:
    """Run `command` in a fresh store and read its clocks from the store."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{store}/mlflow.db"
    started = time.time()
    done = subprocess.run(command, env=env, cwd=store, capture_output=True, text=True)
    exited = time.time() - started
    if done.returncode not in (0, 3):
        raise SystemExit(f"{command[:4]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    client = MlflowClient(uri, uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trained = [r for r in runs if r.data.tags.get("ct.kind") != "pipeline"]
    [run] = trained[-1:]  # the one run that trained
    history = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)

    def since(ms: int | None) -> float | None:
        return None if ms is None else ms / 1000 - started

    pipeline = next((r for r in runs if r.data.tags.get("ct.kind") == "pipeline"), None)
    versions = client.search_model_versions()
    return Clocks(
        run_created=since(run.info.start_time) or 0.0,
        first_epoch=since(history[0].timestamp) or 0.0,
        last_epoch=since(history[-1].timestamp) or 0.0,
        run_ended=since(run.info.end_time) or 0.0,
        exited=exited,
        epochs=len(history),
        pipeline_created=since(pipeline.info.start_time) if pipeline else None,
        version_created=since(versions[0].creation_timestamp) if versions else None,
        pipeline_ended=since(pipeline.info.end_time) if pipeline else None,
    )


def phases(clocks: Clocks) -> dict[str, float]:
    """Seconds per phase (see the module's docstring); they add up to the wall time."""
    start_of_epochs = clocks.first_epoch - clocks.epoch_seconds
    found: dict[str, float] = {}
    if clocks.pipeline_created is not None:
        found["cli+start"] = clocks.pipeline_created
        found["attempt"] = clocks.run_created - clocks.pipeline_created
    else:
        found["process+run"] = clocks.run_created
    found["launch+load"] = start_of_epochs - clocks.run_created
    found["epochs"] = clocks.last_epoch - start_of_epochs
    found["evaluate+log"] = clocks.run_ended - clocks.last_epoch
    if clocks.version_created is not None and clocks.pipeline_ended is not None:
        found["decide+register"] = clocks.version_created - clocks.run_ended
        found["promote+notify"] = clocks.pipeline_ended - clocks.version_created
        found["summary+exit"] = clocks.exited - clocks.pipeline_ended
    else:
        found["exit"] = clocks.exited - clocks.run_ended
    return found


def report(
    commands: dict[str, list[str]], env_for: dict[str, dict[str, str]], workdir: Path
) -> None:
    """Measure the direct run and the pipeline once each (after a warm-up of each),
    and print both breakdowns side by side."""
    measured: dict[str, dict[str, float]] = {}
    totals: dict[str, float] = {}
    for name in commands:
        for attempt in ("warm-up", "measured"):
            store = workdir / f"{name}-{attempt}"
            store.mkdir()
            clocks = measure(commands[name], store, env_for[name] | _store_env(store))
        if clocks.epochs < 2:
            raise SystemExit("--breakdown times an epoch from two of them: use --epochs 2 or more")
        measured[name] = phases(clocks)
        totals[name] = clocks.exited
    rows = list(dict.fromkeys([*measured["pipeline"], *measured["direct"]]))
    print(f"{'phase':18}" + "".join(f" {name:>9}" for name in commands))
    for row in rows:
        cells = [measured[name].get(row) for name in commands]
        shown = [f"{c:8.1f}s" if c is not None else f"{'-':>9}" for c in cells]
        print(f"{row:18} {' '.join(shown)}")
    print(f"{'wall':18}" + "".join(f" {totals[name]:8.1f}s" for name in commands))
    for name in commands:
        if name != "direct":
            print(f"{name} / direct = {totals[name] / totals['direct']:.2f}")


def _store_env(store: Path) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db",
        "CT_HOME": str(store),
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    }
