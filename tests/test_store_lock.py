"""A SQLite store is opened the first time in each process under a lock file (two
processes creating its tables at once collide in alembic); once one process has
opened it, the lock file says so, and later processes open it without waiting for
each other (workers starting together used to queue on the lock one by one)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, ct_env

from ct_service.settings import Settings
from ct_service.tracking import Tracker

OPEN = "from ct_service.settings import Settings; from ct_service.tracking import Tracker; " \
    "Tracker(Settings.from_env()).client.search_experiments(); print('opened')"  # fmt: skip


def open_elsewhere(home: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", OPEN],
        env=ct_env(CT_HOME=str(home)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_once_the_store_is_created_other_processes_open_it_without_the_lock(
    tmp_path: Path,
) -> None:
    home = tmp_path / "ct"
    Tracker(Settings(home=home)).experiment_id("p")  # creates the store's tables
    database, lock_file = home / "mlflow.db", home / "mlflow.db.lock"
    assert lock_file.read_text().split() == ["created", str(database.stat().st_ino)]
    with open(lock_file, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a process opening it would hold it
        done = open_elsewhere(home, timeout=60)  # would wait for ever for the lock
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "opened"


@pytest.mark.slow
def test_a_new_database_beside_an_old_lock_file_is_opened_under_the_lock(tmp_path: Path) -> None:
    home = tmp_path / "ct"
    Tracker(Settings(home=home)).experiment_id("p")
    # a new, empty database in its place (made before the old one goes: another
    # inode); the lock file still says "created" of the old one
    (home / "new.db").touch()
    os.replace(home / "new.db", home / "mlflow.db")
    with open(home / "mlflow.db.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(subprocess.TimeoutExpired):
            open_elsewhere(home, timeout=15)  # it waits for the lock
    done = open_elsewhere(home, timeout=60)  # the lock free: it creates the tables
    assert done.returncode == 0, done.stderr[-2000:]
    said = (home / "mlflow.db.lock").read_text().split()
    assert said == ["created", str((home / "mlflow.db").stat().st_ino)]
