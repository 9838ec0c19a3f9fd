"""What a project's environment costs: the first pipeline (environment built) and
the second (environment cached), for both reference projects, locally and in Docker.

Each pipeline is one attempt of a fixed configuration (`--max-attempts 1
--threshold 0`), embedded, in a fresh store:

  local      CT_ENV_MANAGER=auto: LeNet runs in this environment (it satisfies its
             python_env.yaml: nothing to build); digits gets its python_env.yaml
             built by uv (it pins scikit-learn 1.5.2)
  local-uv   CT_ENV_MANAGER=uv: LeNet's python_env.yaml (TensorFlow, MLflow) built by uv
  docker     CT_EXECUTION=docker: LeNet's Dockerfile, digits' image from its
             python_env.yaml

"First" starts from nothing cached: a new MLFLOW_ENV_ROOT and uv cache (local), a
build CA file of its own, which is part of every environment image's build context,
so Docker's layer cache cannot serve the dependency install (docker). "Second" is
the same command again.

    python benchmarks/environments.py --data ../shared/data/mnist [--base-image ct-base:bookworm]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = {"lenet": ROOT / "projects" / "lenet", "digits": ROOT / "projects" / "digits"}
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
LENET_QUICK = {
    "conv_blocks": "1",
    "filters": "4",
    "dense_units": "16",
    "epochs": "1",
    "max_train_samples": "3000",
}


def pipeline(project: str, data: str, env: dict[str, str]) -> tuple[float, dict[str, str]]:
    """Seconds of one `ct-service run`, and its attempt's environment tags."""
    params = {**LENET_QUICK, "data": data} if project == "lenet" else {}
    dash_p = [arg for k, v in params.items() for arg in ("-P", f"{k}={v}")]
    command = [sys.executable, "-m", "ct_service.cli", "run", str(PROJECTS[project])]
    command += [*dash_p, "--max-attempts", "1", "--threshold", "0", "--json"]
    started = time.monotonic()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"{project}: ct-service run failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds, environment_tags(env, json.loads(done.stdout)["pipeline_id"])


def environment_tags(env: dict[str, str], pipeline_id: str) -> dict[str, str]:
    from mlflow import MlflowClient

    uri = f"sqlite:///{env['CT_HOME']}/mlflow.db"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.get_run(pipeline_id).info.experiment_id
    (attempt,) = client.search_runs([experiment], f"tags.`ct.pipeline_id` = '{pipeline_id}'")
    return {k: v for k, v in attempt.data.tags.items() if k.startswith("ct.environment")}


def service_env(home: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "MLFLOW_"))}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return {**env, "CT_HOME": str(home), **values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="MNIST folder for LeNet")
    parser.add_argument("--base-image", default="", help="CT_DOCKER_BASE_IMAGE")
    parser.add_argument(
        "--executions", default="local,local-uv,docker", help="which of them (comma-separated)"
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ct-bench-env-") as scratch:
        scratch_path = Path(scratch)
        ca = scratch_path / "ca.crt"  # the system bundle, plus a line of its own
        ca.write_text(Path(CA_BUNDLE).read_text() + f"\n# benchmark {uuid.uuid4().hex}\n")
        docker = {
            "CT_EXECUTION": "docker",
            "CT_DOCKER_BUILD_NETWORK": "host",
            "CT_DOCKER_CA_FILE": str(ca),
            "CT_DATA_DIRS": os.path.realpath(args.data),  # LeNet's data, mounted read-only
            **({"CT_DOCKER_BASE_IMAGE": args.base_image} if args.base_image else {}),
        }
        cases = [
            ("lenet", "local", {}),
            ("lenet", "local-uv", {"CT_ENV_MANAGER": "uv"}),
            ("digits", "local", {}),
            ("lenet", "docker", docker),
            ("digits", "docker", docker),
        ]
        chosen = args.executions.split(",")
        cases = [case for case in cases if case[1] in chosen]
        for project, how, values in cases:
            case = scratch_path / f"{project}-{how}"
            caches = {
                "MLFLOW_ENV_ROOT": str(case / "envs"),
                "UV_CACHE_DIR": str(case / "uv-cache"),
            }
            seconds: list[float] = []
            tags: list[dict[str, str]] = []
            for _ in ("first", "second"):
                home = case / f"ct-{len(seconds)}"
                took, found = pipeline(project, args.data, service_env(home, **values, **caches))
                seconds.append(took)
                tags.append(found)
            rows.append((project, how, seconds, tags))
            print(f"{project} {how}: {seconds[0]:.1f} s, then {seconds[1]:.1f} s", flush=True)
    print()
    print("| project | execution | first pipeline | second | environment (first / second) |")
    print("| --- | --- | --- | --- | --- |")
    for project, how, seconds, tags in rows:
        built = [
            t.get("ct.environment.build")
            or {"true": "image built", "false": "image cached"}.get(
                t.get("ct.environment.built", ""), "nothing to build"
            )
            for t in tags
        ]
        print(
            f"| {project} | {how} | {seconds[0]:.1f} s | {seconds[1]:.1f} s | "
            f"{built[0]} / {built[1]} |"
        )
    print("\nreasons:")
    for project, how, _, tags in rows:
        print(f"  {project} {how}: {tags[0].get('ct.environment', '')}")


if __name__ == "__main__":
    main()
