"""benchmarks/scale.py --smoke: the scale benchmark runs end to end on real worker
processes, a private Redis and a SQLite store (1 and 2 workers, one short pipeline
each of 3 attempts of the sleep project, then one warm push through the webhook),
every pipeline finishes, and its tables print. The figures themselves are `make
benchmark-scale` (docs/deployment.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, ct_env


@pytest.mark.slow
def test_the_smoke_run_finishes_every_pipeline_and_prints_the_tables() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/scale.py", "--smoke"],
        env=ct_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    # every run: its pipelines trained their 3 attempts each (the benchmark checks
    # outcomes and counts, and exits non-zero otherwise), and its time is accounted for
    for workers in (1, 2):
        assert f"sqlite, {workers} worker(s): {workers} pipelines ({3 * workers} attempts," in out
    assert out.count("  MLflow (the service's calls): ") == 2
    table = out.split("pipelines per hour", 1)[1].split("\n\n")[0].splitlines()
    rows = [line.split() for line in table[2:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("sqlite", "1", "1"), ("sqlite", "2", "2")]
    assert float(rows[0][5]) == 1.0  # 1 worker is its own linear
    latency = out.split("push -> first epoch", 1)[1].splitlines()
    phases = [line.split()[0] for line in latency[2:] if line.strip()]
    assert phases[:4] == ["answer", "intake", "fetch", "start"]
    total = next(line for line in latency if line.startswith("total"))
    assert 0 < float(total.split()[1]) < 120


@pytest.mark.slow
@pytest.mark.docker
def test_the_latency_part_measures_a_push_that_trains_in_its_container() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/scale.py", "--parts", "latency", "--stores", "sqlite"]
        + ["--pushes", "1", "--epoch-seconds", "0.5", "--push-interval", "1"]
        + ["--execution", "docker"],
        env=ct_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    latency = done.stdout.split("push -> first epoch", 1)[1].splitlines()
    assert "docker execution" in latency[0]
    launch = next(line for line in latency if line.startswith("launch"))
    total = next(line for line in latency if line.startswith("total"))
    # the container's start is its own phase, inside the push's total
    assert 0 < float(launch.split()[1]) < float(total.split()[1]) < 120
