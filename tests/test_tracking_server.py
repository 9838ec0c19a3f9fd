"""The local `mlflow server` containers log to (tracking_server.py): an embedded run
starts it ahead of its first attempt only where containers will need it and its
store exists (two processes creating a new SQLite store's tables would collide), and
it runs without MLflow 3's job runners. A real server on a real SQLite store."""

from __future__ import annotations

import os
import urllib.request
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
