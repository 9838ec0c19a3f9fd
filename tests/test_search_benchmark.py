"""benchmarks/search.py --smoke and --suite --smoke: every strategy completes a search
on real training (one seed, tiny subsets, small budgets). The full tables are
`make benchmark-search` and `benchmarks/search.py --suite`; this only proves the
benchmark runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, ct_env

FASHION = Path("/usr/share/datasets/fashion-mnist")
STRATEGIES = ("old-rule", "random", "tpe", "tpe-hyperband", "ct", "ct-replay")


@pytest.mark.slow
def test_the_smoke_run_completes_every_strategy(mnist_dir: Path) -> None:
    if not (FASHION / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST not found at {FASHION}; `make fashion-mnist` installs it")
    done = subprocess.run(
        [sys.executable, "benchmarks/search.py", "--smoke", "--mnist", str(mnist_dir)],
        env=ct_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout.split("benchmark wall time", 1)[1]
    for strategy in STRATEGIES:
        assert f"fashion>=0.88 seed 0 {strategy}: " in done.stdout
        assert any(line.startswith(f"{strategy} ") for line in table.splitlines()), table


@pytest.mark.slow
def test_the_suite_smoke_run_completes_every_strategy_on_every_data_set(mnist_dir: Path) -> None:
    """`--suite --smoke`: one tiny task per data set of the suite (MNIST,
    Fashion-MNIST, digits, diabetes), every strategy, one seed, two attempts."""
    if not (FASHION / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST not found at {FASHION}; `make fashion-mnist` installs it")
    done = subprocess.run(
        [sys.executable, "benchmarks/search.py", "--suite", "--smoke", "--mnist", str(mnist_dir)],
        env=ct_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    tables = done.stdout.split("benchmark wall time", 1)[1].split("\n\n")
    smoke_tasks = ("fashion-20k-weak", "mnist-20k-weak", "digits-default", "diabetes-easy")
    for task in smoke_tasks:
        (table,) = [t for t in tables if t.startswith(f"{task} [design half]")]
        rows = {line.split()[0] for line in table.splitlines()[2:]}
        assert rows == {*STRATEGIES, "oracle"}, table
        for strategy in STRATEGIES:
            assert f"{task} seed 0 {strategy}: " in done.stdout
    assert "split was fixed in commit 505704d" in done.stdout
    assert "design half, ct: success rate" in done.stdout
