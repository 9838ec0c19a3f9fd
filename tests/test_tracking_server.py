"""The local `mlflow server` containers log to (tracking_server.py): an embedded run
starts it ahead of its first attempt only where containers will need it and its
store exists (two processes creating a new SQLite store's tables would collide), it
runs without MLflow 3's job runners, and its store URI (a PostgreSQL password in it)
is on no command line. Real servers on a real SQLite store and on PostgreSQL."""

from __future__ import annotations

import os
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ct_service.execution import tracking_server
from ct_service.settings import Settings


def process_group(leader: int) -> list[str]:
    """The command lines of the processes in `leader`'s process group."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) == leader:
            found.append(command.decode(errors="replace"))
    return found


@pytest.mark.integration
def test_the_server_for_containers_starts_early_only_on_an_existing_store_and_without_job_runners(
    tmp_path: Path,
) -> None:
    docker = Settings(home=tmp_path, execution="docker")
    local = Settings(home=tmp_path, execution="local")
    try:
        tracking_server.start_early(docker)  # no store yet: the pipeline creates it first
        assert docker.tracking_uri not in tracking_server._servers
        MlflowClient(docker.tracking_uri).search_experiments()  # the store, created
        tracking_server.start_early(local)  # its attempts need no server
        assert local.tracking_uri not in tracking_server._servers
        tracking_server.start_early(docker)
        process, url = tracking_server._servers[docker.tracking_uri]
        assert tracking_server.url_for(docker) == url  # the same server, now answering
        with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
            assert answer.status == 200
        group = process_group(process.pid)
        assert any("mlflow" in command and "server" in command for command in group)
        assert not [c for c in group if "huey" in c or "_job_runner" in c], group
    finally:
        tracking_server.stop_all()


def _command_lines() -> dict[int, bytes]:
    """Every process's command line, as any user of the machine may read it (`ps`)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
    return found


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A database of its own on the machine's PostgreSQL (127.0.0.1:5432, trust auth:
    `make postgres`), dropped afterwards."""
    import psycopg2

    name = f"ct_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    except psycopg2.OperationalError as error:
        pytest.fail(f"no PostgreSQL answers on 127.0.0.1:5432 ({error}); run: make postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.mark.integration
def test_the_servers_store_uri_and_its_password_are_on_no_command_line(
    tmp_path: Path, postgres_database: str
) -> None:
    """`ps` shows every user each process's command line: the PostgreSQL password in
    the store URI goes to the server, and its workers, through their environment."""
    import psycopg2

    secret = f"s3cret-{uuid.uuid4().hex}"
    store = f"postgresql+psycopg2://postgres:{secret}@127.0.0.1:5432/{postgres_database}"
    settings = Settings(home=tmp_path, execution="docker", tracking_uri=store)
    try:
        url = tracking_server.url_for(settings)
        with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
            assert answer.status == 200
        MlflowClient(url).create_experiment("kept-in-postgres")
        process, _ = tracking_server._servers[store]
        group = process_group(process.pid)
        assert any("uvicorn" in c or "gunicorn" in c for c in group), group  # a worker too
        leaked = {pid: line for pid, line in _command_lines().items() if secret.encode() in line}
        assert leaked == {}
        environment = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
        assert f"MLFLOW_BACKEND_STORE_URI={store}".encode() in environment
    finally:
        tracking_server.stop_all()
    db = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=postgres_database)
    try:
        with db.cursor() as cursor:
            cursor.execute("SELECT name FROM experiments")
            assert ("kept-in-postgres",) in cursor.fetchall()  # that server used this store
    finally:
        db.close()
    assert secret not in settings.ui_command()  # the command `ct-service run` suggests
