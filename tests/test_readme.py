"""README.md as a newcomer reads it: short, exactly two set-up commands, and its quick
start and model-loading snippet run as written (the README's own text, found by the
`<!-- README test: ... -->` comment before each block), so they cannot rot."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MNIST, ROOT, ct_env

README = ROOT / "README.md"


def block_after(marker: str) -> tuple[str, str]:
    """The fenced code block right after `<!-- README test: MARKER -->`, and the next
    fenced block after it (the expected output the README shows)."""
    text = README.read_text()
    start = text.index(f"<!-- README test: {marker} -->")
    fences = re.finditer(r"^```[a-z]*\n(.*?)^```$", text[start:], re.M | re.S)
    code, shown = next(fences).group(1), next(fences).group(1)
    return code, shown


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


@pytest.mark.unit
def test_readme_is_at_most_about_250_lines() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail to docs/"


@pytest.mark.unit
def test_set_up_has_exactly_the_two_commands_and_ci_runs_the_second() -> None:
    commands = [
        line.strip().split("  #")[0].strip()
        for line in section("Set up").splitlines()
        if line.startswith("    ") and not line.startswith("    >")
    ]
    assert commands == ["make run DATA=../shared/data/mnist", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.mark.unit
def test_readme_links_name_files_that_exist() -> None:
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README.read_text())
    assert links, "README.md links to the docs"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert missing == []


def shape(line: str) -> str:
    """A transcript line's first two words, ids and numbers masked."""
    masked = re.sub(r"\b[0-9a-f]{8,}\b", "<id>", line)
    masked = re.sub(r"\d+(\.\d+)?", "<n>", masked)
    return " ".join(masked.split()[:2])


def unchanged_tree() -> str:
    """What git sees in the checkout, ignored files included (a store left in it,
    .ct-service/, is ignored), without Python's caches."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return "\n".join(
        line for line in status.splitlines() if "__pycache__" not in line and "_cache/" not in line
    )


@pytest.mark.slow
def test_quick_start_and_model_snippet_run_as_written(tmp_path: Path, mnist_dir: Path) -> None:
    """The quick start, run from the clone as the README says, trains a real pipeline
    that promotes `lenet`, and prints what the README shows; the snippet then loads
    `models:/lenet@production` from that store and reads real MNIST digits. The store
    is a temporary CT_HOME (the environment is the test's; the commands are the
    README's), and nothing is left in the checkout."""
    assert (ROOT / "../shared/data/mnist").resolve() == mnist_dir.resolve()  # the README's path
    before = unchanged_tree()
    env = ct_env(CT_HOME=str(tmp_path / ".ct-service"))

    quick_start, shown = block_after("quick start")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", quick_start],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    printed = [shape(line) for line in done.stdout.splitlines() if line.strip()]
    expected = [shape(line) for line in shown.splitlines() if line.strip()]
    missing = [line for line in expected if line not in printed]
    assert missing == [], f"the README shows lines the quick start does not print:\n{done.stdout}"

    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / '.ct-service' / 'mlflow.db'}"
    production = MlflowClient(store, store).get_model_version_by_alias("lenet", "production")
    assert float(production.tags["ct.metric.test_accuracy"]) >= 0.8

    snippet, snippet_shown = block_after("consume the model")
    (tmp_path / "snippet.py").write_text(snippet)
    driver = (
        "import json, runpy, sys; found = runpy.run_path(sys.argv[1]); "
        "print('PREDICTED', json.dumps(found['probabilities'].argmax(axis=1).tolist()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", driver, str(tmp_path / "snippet.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    predicted = json.loads(done.stdout.split("PREDICTED ", 1)[1])
    with gzip.open(MNIST / "t10k-labels-idx1-ubyte.gz") as idx:
        labels = list(idx.read()[8 : 8 + len(predicted)])
    assert len(predicted) == 100
    assert sum(p == t for p, t in zip(predicted, labels, strict=True)) / len(labels) >= 0.8
    assert f"[{' '.join(map(str, predicted[:10]))}]" in done.stdout  # its own print
    assert snippet_shown.strip() == f"[{' '.join(map(str, labels[:10]))}]"  # the true digits

    assert unchanged_tree() == before
