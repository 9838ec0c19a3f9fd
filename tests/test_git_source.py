"""A pipeline for one commit of a git repository (served over file://): the worker
fetches exactly that commit, trains what it holds, records it, and cleans up."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from conftest import LENET, ROOT, ct_env, git, init_repository


@pytest.fixture
def repository(tmp_path: Path) -> tuple[str, str, str]:
    """LeNet under models/lenet; the second commit changes its default dense_units."""
    repo = tmp_path / "repo"
    shutil.copytree(LENET, repo / "models" / "lenet", ignore=shutil.ignore_patterns("__pycache__"))
    init_repository(repo)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "LeNet")
    first = git(repo, "rev-parse", "HEAD")
    mlproject = repo / "models" / "lenet" / "MLproject"
    text = mlproject.read_text()
    assert "dense_units: {type: float, default: 84}" in text
    mlproject.write_text(
        text.replace(
            "dense_units: {type: float, default: 84}", "dense_units: {type: float, default: 32}"
        )
    )
    git(repo, "commit", "-q", "-am", "Smaller dense layer")
    return repo.as_uri(), first, git(repo, "rev-parse", "HEAD")


def run(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "run", *args, "--json"],
        env=ct_env(CT_HOME=str(home), CT_GIT_ALLOW_FILE="1"),  # served over file://
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_each_commit_trains_what_it_holds(tmp_path: Path, mnist_dir: Path, repository):
    url, first, second = repository
    home = tmp_path / "ct"
    common = [
        "-P",
        f"data={mnist_dir}",
        "-P",
        "max_train_samples=1000",
        "-P",
        "epochs=1",
        "--max-attempts",
        "1",
        "--threshold",
        "0",
    ]
    trained = {}
    for commit in (first, second):
        result = run(home, "models/lenet", "--git", url, "--commit", commit, *common)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        summary = json.loads(result.stdout)
        assert summary["commit"] == commit and summary["outcome"] == "promoted"
        [attempt] = summary["attempts"]
        store = f"sqlite:///{home}/mlflow.db"
        run_data = mlflow.MlflowClient(store, store).get_run(attempt["run_id"]).data
        pipeline_tags = mlflow.MlflowClient(store, store).get_run(summary["pipeline_id"]).data.tags
        assert pipeline_tags["ct.commit"] == commit
        assert pipeline_tags["ct.source.url"] == url
        trained[commit] = run_data.params["dense_units"]
        assert not (home / "work" / summary["pipeline_id"]).exists()  # cleaned up
    assert trained == {first: "84", second: "32"}


@pytest.mark.slow
def test_an_unknown_commit_fails_the_pipeline_with_the_reason(tmp_path: Path, repository):
    url, _, _ = repository
    result = run(tmp_path / "ct", "models/lenet", "--git", url, "--commit", "f" * 40)
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "failed"
    assert "git fetch failed" in summary["reason"]
    assert summary["attempts"] == []


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--git", "https://ci:t0ken@example.com/a.git", "--commit", "a" * 40],
            "put no credentials in the git URL",
        ),
        (
            ["--git", "https://example.com/a.git", "--commit", "main"],
            "needs --commit with a full 40-character commit id",
        ),
    ],
)
def test_bad_git_sources_are_refused_before_anything_runs(tmp_path: Path, args, message):
    result = run(tmp_path / "ct", "models/lenet", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "t0ken" not in result.stdout + result.stderr


@pytest.mark.integration
def test_a_commits_ct_yaml_target_is_read_when_its_pipeline_starts(tmp_path: Path) -> None:
    """A git pipeline is created before anything is fetched (the webhook answers at
    once); the start step reads the commit's ct.yaml and takes its target."""
    repo = tmp_path / "repo"
    project = repo / "quick"
    project.mkdir(parents=True)
    (project / "MLproject").write_text(
        "name: quick\nentry_points:\n  main:\n    command: python train.py\n"
    )
    (project / "train.py").write_text("import mlflow\nmlflow.log_metric('test_accuracy', 0.9)\n")
    (project / "ct.yaml").write_text("target: {metric: test_accuracy, threshold: 0.95}\n")
    init_repository(repo)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "quick")
    commit = git(repo, "rev-parse", "HEAD")
    home = tmp_path / "ct"
    result = run(home, "quick", "--git", repo.as_uri(), "--commit", commit, "--max-attempts", "1")
    summary = json.loads(result.stdout)
    assert summary["target"] == "test_accuracy >= 0.95"  # not the default, 0.8
    assert result.returncode == 3, summary["reason"]  # 0.9 misses it
    store = f"sqlite:///{home}/mlflow.db"
    tags = mlflow.MlflowClient(store, store).get_run(summary["pipeline_id"]).data.tags
    assert tags["ct.target.from"] == "ct.yaml"
