"""benchmarks/search.py --smoke: every strategy completes a search on real training
(one seed, a tiny Fashion-MNIST subset, small budgets). The full table is
`make benchmark-search`; this only proves the benchmark runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, ct_env

FASHION = Path("/usr/share/datasets/fashion-mnist")


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
    for strategy in ("old-rule", "random", "tpe", "tpe-hyperband", "ct", "ct-replay"):
        assert f"fashion>=0.88 seed 0 {strategy}: " in done.stdout
        assert any(line.startswith(f"{strategy} ") for line in table.splitlines()), table
