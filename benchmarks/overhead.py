"""What ct-service costs over training directly.

The same single-attempt LeNet configuration, run three ways, alternating, for
several rounds in one process tree (this machine is noisy: only ratios measured
side by side mean anything):

  direct    python projects/lenet/train.py ...            (logs to MLflow itself)
  mlflow    mlflow run projects/lenet --env-manager local  (MLflow Projects)
  pipeline  ct-service run projects/lenet --max-attempts 1 (Celery + MLflow Projects,
            embedded: in-process worker, SQLite store, registry promotion)
  cold      the same pipeline with CT_WARM_LAUNCHER_SECONDS=0 (no spare launcher:
            the attempt's interpreter imports TensorFlow after its run is created)
  docker    the same pipeline with CT_EXECUTION=docker (--docker; the environment
            image cached, as from the second attempt on), after timing one uncached
            build of that image (what the first attempt pays)

    python benchmarks/overhead.py --data ../shared/data/mnist [--rounds 3]
        [--docker --base-image ct-base:bookworm]
    python benchmarks/overhead.py --data ../shared/data/mnist --breakdown
        [--docker --base-image ct-base:bookworm]

--breakdown: where the seconds go, phase by phase, read off MLflow's clocks for one
direct run and one pipeline, and one in Docker with --docker (overhead_breakdown.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "projects" / "lenet"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def without_early_stops(folder: Path) -> Path:
    """A copy of LeNet whose pipeline trains every epoch it is given, as the direct
    run does (an early stop at the target would make the pipeline look cheaper)."""
    project = folder / "lenet"
    shutil.copytree(LENET, project, ignore=shutil.ignore_patterns("__pycache__", "mlruns"))
    with open(project / "ct.yaml", "a") as ct_yaml:
        ct_yaml.write("\nstop_early: false\n")
    return project


def commands(project: Path, data: str, samples: int, epochs: int) -> dict[str, list[str]]:
    params = {"epochs": epochs, "max_train_samples": samples, "data": data}
    flags = [arg for k, v in params.items() for arg in (f"--{k.replace('_', '-')}", str(v))]
    dash_p = [arg for k, v in params.items() for arg in ("-P", f"{k}={v}")]
    return {
        "direct": [sys.executable, str(project / "train.py"), *flags],
        "mlflow": [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(project),
            "--env-manager",
            "local",
            *dash_p,
        ],
        "pipeline": [
            sys.executable,
            "-m",
            "ct_service.cli",
            "run",
            str(project),
            *dash_p,
            "--max-attempts",
            "1",
        ],
    }


def timed(command: list[str], store: Path, extra_env: dict[str, str] | None = None) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "MLFLOW_"))}
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{store}/mlflow.db",
        CT_HOME=str(store),
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
        **(extra_env or {}),
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
    parser.add_argument("--docker", action="store_true", help="also run the pipeline in Docker")
    parser.add_argument("--base-image", default="", help="BASE_IMAGE for the environment image")
    parser.add_argument("--breakdown", action="store_true", help="time each phase instead")
    args = parser.parse_args()
    data = str(Path(args.data).resolve())
    copy = tempfile.TemporaryDirectory()
    runs = commands(without_early_stops(Path(copy.name)), data, args.samples, args.epochs)
    if args.breakdown:
        from overhead_breakdown import report

        clean = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "MLFLOW_"))}
        env_for = {"direct": clean, "pipeline": clean}
        timed_runs = {name: runs[name] for name in env_for}
        if args.docker:
            timed_runs["docker"] = runs["pipeline"]
            env_for["docker"] = clean | docker_settings(args.base_image, data)
        with tempfile.TemporaryDirectory() as tmp:
            report(timed_runs, env_for, Path(tmp))
        return
    # The same pipeline without spare launchers: every attempt's interpreter starts
    # cold and imports its libraries after its run is created (as before spares.py).
    runs["cold"] = runs["pipeline"]
    environments: dict[str, dict[str, str]] = {"cold": {"CT_WARM_LAUNCHER_SECONDS": "0"}}
    if args.docker:
        runs["docker"] = runs["pipeline"]
        environments["docker"] = docker_settings(args.base_image, data)
        print(f"first build of the LeNet environment image: {first_build(args.base_image):.1f} s")
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
            timed(command, stores[name], environments.get(name))
        for round_number in range(1, args.rounds + 1):
            order = list(runs) if round_number % 2 else list(reversed(runs))
            for name in order:
                times[name].append(timed(runs[name], stores[name], environments.get(name)))
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
    print(f"cold pipeline / direct   = {median['cold'] / median['direct']:.2f}")
    if "docker" in median:
        print(f"docker pipeline / direct = {median['docker'] / median['direct']:.2f}")
        print(f"docker - pipeline        = {median['docker'] - median['pipeline']:+.1f} s")


def docker_settings(base_image: str, data: str) -> dict[str, str]:
    """CT_EXECUTION=docker on this machine: host networking, the host's CA for pip,
    the data folder as the one data root containers may mount (read-only)."""
    env = {
        "CT_EXECUTION": "docker",
        "CT_DOCKER_BUILD_NETWORK": "host",
        "CT_DATA_DIRS": str(Path(data).resolve()),
    }
    if base_image:
        env["CT_DOCKER_BASE_IMAGE"] = base_image
    if Path(CA_BUNDLE).is_file():
        env["CT_DOCKER_CA_FILE"] = CA_BUNDLE
    return env


def first_build(base_image: str) -> float:
    """An uncached build of projects/lenet/Dockerfile, as the first attempt pays it."""
    import docker

    context = Path(tempfile.mkdtemp())
    for name in ("Dockerfile", "requirements.txt"):
        (context / name).write_bytes((LENET / name).read_bytes())
    if Path(CA_BUNDLE).is_file():
        (context / "ca.crt").write_bytes(Path(CA_BUNDLE).read_bytes())
    started = time.perf_counter()
    image, _ = docker.from_env(timeout=900).images.build(
        path=str(context),
        tag="ct-benchmark-first-build:latest",
        buildargs={"BASE_IMAGE": base_image} if base_image else {},
        network_mode="host",
        nocache=True,
        rm=True,
    )
    elapsed = time.perf_counter() - started
    docker.from_env().images.remove(image.id, force=True)
    return elapsed


if __name__ == "__main__":
    main()
