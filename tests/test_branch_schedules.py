"""Schedules in repositories.yaml (docs/data.md#schedules): parsed with the file and
entry named in every refusal; a tick trains the branch's head commit once, `if_changed`
skips a commit trained already; and a real `ct-service beat` process fires a
one-minute crontab entry that a real worker turns into a pipeline. Real git (a local
repository, CT_GIT_ALLOW_FILE), Redis, MLflow on SQLite."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import WorkerProcess, ct_env, git, init_repository
from helpers import wait_for

from ct_service import run_tags
from ct_service.exceptions import SettingsError
from ct_service.repositories import load_repositories
from ct_service.settings import Settings
from ct_service.tracking import Tracker

PROJECT = {  # a project that trains in a moment: the test is about what starts it
    "MLproject": "name: tiny\nentry_points:\n  main:\n    parameters:\n"
    "      rate: {type: float, default: 0.5}\n    command: python train.py --rate {rate}\n",
    "train.py": "import mlflow, sys\nwith mlflow.start_run():\n"
    "    mlflow.log_metric('test_accuracy', 0.9)\n",
}


def repository(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    init_repository(repo)
    for name, text in PROJECT.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "tiny")
    return repo


def allow_list(tmp_path: Path, repo: Path, schedule: str) -> Path:
    path = tmp_path / "repositories.yaml"
    path.write_text(
        "repositories:\n  - name: acme/tiny\n    provider: github\n"
        f"    url: file://{repo}\n    secret_env: PUSH_SECRET\n    branches: [main, dev]\n"
        f"    schedule: {schedule}\n"
    )
    return path


@pytest.mark.unit
@pytest.mark.parametrize(
    ("schedule", "parsed", "error"),
    [
        ('{cron: "0 3 * * *"}', [("main", "0 3 * * *", False), ("dev", "0 3 * * *", False)], ""),
        ('{cron: "*/5 * * * *", if_changed: true, branches: [dev]}', [("dev", "*/5 * * * *", True)], ""),
        ('[{cron: "0 3 * * *", branches: main}, {cron: "0 4 * * 1", branches: [dev]}]',
         [("main", "0 3 * * *", False), ("dev", "0 4 * * 1", False)], ""),
        ('{cron: "0 3 * * *", branches: [release]}', [], r"repositories\[0\].schedule.branches: release not among"),
        ('{cron: "0 3 * *"}', [], r"repositories\[0\].schedule: schedule.cron '0 3 \* \*' must have five fields"),
        ('[{cron: "0 3 * * *"}, {cron: "0 99 * * *"}]', [], r"repositories\[0\].schedule\[1\]: schedule.cron"),
        ('{cron: "0 3 * * *", every: day}', [], "unknown key"),
        ('"0 3 * * *"', [], "schedule must be a mapping"),
    ],
)  # fmt: skip
def test_a_repository_schedule_is_read_per_branch(tmp_path: Path, schedule, parsed, error) -> None:
    path = allow_list(tmp_path, tmp_path, schedule)
    environ = {"PUSH_SECRET": "s"}
    if error:
        with pytest.raises(SettingsError, match=error) as raised:
            load_repositories(path, environ, allow_file=True)
        assert str(path) in str(raised.value)
        return
    [entry] = load_repositories(path, environ, allow_file=True).values()
    assert [(b, s.cron, s.if_changed) for b, s in entry.schedules] == parsed


@pytest.mark.integration
def test_a_tick_trains_the_branch_head_once_and_if_changed_skips(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ct_service.orchestration.branch_schedules import beat_entries, fire

    monkeypatch.setenv("PUSH_SECRET", "push-secret-1")
    repo = repository(tmp_path)
    path = allow_list(tmp_path, repo, '{cron: "* * * * *", if_changed: true, branches: [main]}')
    settings = Settings(
        home=tmp_path / "ct", broker_url=redis_url, repositories_file=str(path),
        git_allow_file=True,
    )  # fmt: skip
    [entry] = beat_entries(settings).values()
    assert entry["args"] == ("github:acme/tiny", "main", "* * * * *")
    at = [datetime(2026, 12, 7, 3, minute, tzinfo=timezone.utc) for minute in range(4)]
    step = fire(settings, "github:acme/tiny", "main", "* * * * *", at[0])
    assert step is not None
    tracker = Tracker(settings)
    started = tracker.pipeline(step.args[0])
    head = git(repo, "rev-parse", "HEAD")
    assert started.spec.commit == head and started.tags[run_tags.TRIGGER] == "schedule"
    assert started.tags[run_tags.TRIGGER_REASON] == (
        f"schedule * * * * * of github:acme/tiny main: commit {head[:12]}"
    )
    assert started.tags[run_tags.SOURCE_REPOSITORY] == "github:acme/tiny"
    assert fire(settings, "github:acme/tiny", "main", "* * * * *", at[0]) is None  # redelivered
    assert fire(settings, "github:acme/tiny", "main", "* * * * *", at[1]) is None  # trained
    (repo / "train.py").write_text(PROJECT["train.py"] + "print('changed')\n")
    git(repo, "commit", "-q", "-am", "change")
    later = fire(settings, "github:acme/tiny", "main", "* * * * *", at[2])
    assert later is not None
    assert tracker.pipeline(later.args[0]).spec.commit == git(repo, "rev-parse", "HEAD")
    assert fire(settings, "github:acme/tiny", "dev", "* * * * *", at[3]) is None  # not declared


@pytest.mark.slow
def test_a_real_beat_fires_a_one_minute_schedule(
    tmp_path: Path, redis_url: str, services: list
) -> None:
    """Celery beat's own crontab, `* * * * *`: the next minute's tick reaches a worker,
    which creates the branch head's pipeline (polled for; at most about 60 s away)."""
    repo = repository(tmp_path)
    path = allow_list(tmp_path, repo, '{cron: "* * * * *", branches: [main]}')
    env = ct_env(
        CT_HOME=str(tmp_path / "ct"), CT_BROKER_URL=redis_url, CT_REPOSITORIES_FILE=str(path),
        CT_GIT_ALLOW_FILE="1", CT_TRUST_PUSHED_CODE="1", CT_WATCHDOG="off",
        CT_DATA_SCAN_SECONDS="0", CT_DECAY_SCHEDULE="0", PUSH_SECRET="push-secret-1",
    )  # fmt: skip
    services.append(WorkerProcess(env, tmp_path / "worker.log"))
    beat = WorkerProcess(env, tmp_path / "beat.log", "beat")
    services.append(beat)
    tracker = Tracker(Settings(home=tmp_path / "ct"))

    def scheduled() -> list:
        try:
            pipelines = tracker.recent_pipelines()
        except Exception:  # the store is being created
            return []
        return [p for p in pipelines if p.tags.get(run_tags.TRIGGER) == "schedule"]

    [started] = wait_for(scheduled, 150, "the scheduled pipeline", tmp_path / "worker.log")
    assert started.spec.commit == git(repo, "rev-parse", "HEAD")
    assert "ct.schedule.branch" in beat.log_path.read_text()  # sent by beat, not by hand
