"""What ct-service costs over training directly.

The same single-attempt LeNet configuration, run three ways, alternating, for
several rounds in one process tree (this machine is noisy: only ratios measured
side by side mean anything):

  direct    python projects/lenet/train.py ...            (logs to MLflow itself)
  mlflow    mlflow run projects/lenet --env-manager local  (MLflow Projects)
  pipeline  ct-service run projects/lenet --max-attempts 1 (Celery + MLflow Projects,
            embedded: in-process worker, SQLite store, registry promotion)

    python benchmarks/overhead.py --data ../shared/data/mnist [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "projects" / "lenet"


def commands(data: str, samples: int, epochs: int) -> dict[str, list[str]]:
    params = {"epochs": epochs, "max_train_samples": samples, "data": data}
    flags = [arg for k, v in params.items() for arg in (f"--{k.replace('_', '-')}", str(v))]
    dash_p = [arg for k, v in params.items() for arg in ("-P", f"{k}={v}")]
    return {
        "direct": [sys.executable, str(LENET / "train.py"), *flags],
        "mlflow": [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(LENET),
            "--env-manager",
            "local",
            *dash_p,
        ],
        "pipeline": [
            sys.executable,
            "-m",
            "ct_service.cli",
            "run",
            str(LENET),
            *dash_p,
            "--max-attempts",
            "1",
        ],
    }


def timed(command: list[str], store: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "MLFLOW_"))}
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{store}/mlflow.db",
        CT_HOME=str(store),
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
    )
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=store, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 3):  # 3: the pipeline ran but missed its target
        raise SystemExit(f"{command[:4]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="MNIST folder (IDX files) or .npz")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    data = str(Path(args.data).resolve())
    runs = commands(data, args.samples, args.epochs)
    times: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        stores = {name: Path(tmp, name) for name in runs}
        for store in stores.values():
            store.mkdir()
        print(
            f"warm-up (creates each store), then {args.rounds} rounds; "
            f"{args.samples} images, {args.epochs} epochs"
        )
        for name, command in runs.items():
            timed(command, stores[name])
        for round_number in range(1, args.rounds + 1):
            order = list(runs) if round_number % 2 else list(reversed(runs))
            for name in order:
                times[name].append(timed(runs[name], stores[name]))
            shown = "  ".join(f"{name} {times[name][-1]:6.1f} s" for name in runs)
            print(f"round {round_number}: {shown}")
    median = {name: statistics.median(values) for name, values in times.items()}
    print()
    for name in runs:
        print(
            f"{name:9} median {median[name]:6.1f} s   "
            f"(min {min(times[name]):.1f}, max {max(times[name]):.1f})"
        )
    print(f"mlflow run / direct      = {median['mlflow'] / median['direct']:.2f}")
    print(f"pipeline / direct        = {median['pipeline'] / median['direct']:.2f}")
    print(f"pipeline - direct        = {median['pipeline'] - median['direct']:+.1f} s")


if __name__ == "__main__":
    main()
