"""Spare containers (spare_containers.py): which attempts one may take, what it can
reach before it knows its attempt, that the script it is handed runs as `python
script.py` would in a new container, that its run's artifacts end in the run's own
folder, and that an unused one goes away. Real Docker engine, `ct-base:bookworm`
(`make docker-base`); the whole pipeline in a spare is in test_docker.py."""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from ct_service.execution.containers import STORE_LABEL, WORKDIR, store_label
from ct_service.execution.docker import LEFT_OUT, remove_orphaned_containers
from ct_service.execution.pushed_files import archive_project
from ct_service.execution.spare_containers import (
    LAUNCHER_HOME,
    SPARE_PREFIX,
    can_run,
    create,
    hand_over,
    image_environment,
    link_artifacts,
    release,
)
from ct_service.settings import DockerSettings, Settings

JOB = """\
import json, os, sys
folder = os.environ["RUN_ARTIFACTS"]
with open(os.path.join(folder, "written.txt"), "w") as out:
    out.write("from the container")
print("SEEN " + json.dumps({
    "name": __name__,
    "file": __file__,
    "argv": sys.argv,
    "cwd": os.getcwd(),
    "path0": sys.path[0],
    "run_id": os.environ.get("MLFLOW_RUN_ID"),
    "launcher_importable": any("ct-service" in p for p in sys.path),
    "data": open(os.path.join(sys.argv[2], "sample.txt")).read(),
}))
"""


@pytest.mark.unit
@pytest.mark.parametrize(
    ("command", "data", "continued", "expected"),
    [
        ("python train.py --epochs 2", ["/data/mnist:/data/mnist:ro"], "", True),
        ("python3 job.py", [], "", True),
        # continues another run: its checkpoint folder would have to be mounted
        ("python train.py", [], "/store/1/abc/artifacts", False),
        # a data path named through a link: mounted at a path the spare does not have
        ("python train.py", ["/data/mnist:/home/me/mnist:ro"], "", False),
        ("python train.py && rm -rf /", [], "", False),  # a shell would interpret it
        ("python -m trainer", [], "", False),
        ("bash run.sh", [], "", False),
    ],
)
def test_which_attempts_a_spare_can_run(
    command: str, data: list[str], continued: str, expected: bool
) -> None:
    assert can_run(command, data, continued) is expected


def probe_project(folder: Path) -> Path:
    folder.mkdir()
    (folder / "MLproject").write_text(
        textwrap.dedent("""\
            name: probe
            docker_env:
              image: ct-base:bookworm
            entry_points:
              main:
                parameters:
                  data: {type: string, default: ""}
                command: "python3 job.py probe {data}"
            """)
    )
    (folder / "job.py").write_text(JOB)
    return folder


def settings_for(tmp_path: Path, data: Path, idle_seconds: float) -> Settings:
    return Settings(
        home=tmp_path / "home",
        execution="docker",
        warm_launcher_seconds=idle_seconds,
        docker=DockerSettings(data_dirs=(str(data),)),
    )


@pytest.mark.slow
@pytest.mark.docker
def test_a_spare_reaches_only_what_an_attempt_container_may_and_runs_its_script_as_python_would(
    tmp_path: Path, docker_client
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "sample.txt").write_text("a data file")
    project = probe_project(tmp_path / "project")
    settings = settings_for(tmp_path, data, idle_seconds=120)
    spare = create(settings, project)
    assert spare is not None
    try:
        container = spare.container
        container.reload()
        assert container.name.startswith(SPARE_PREFIX)
        assert container.labels[STORE_LABEL] == store_label(settings.tracking_uri)
        # Before its attempt: the data roots read-only, its own empty folder
        # read-write, empty folders of its own for the code at the working folder and
        # over the store's artifact folder, and the launcher read-only (the root file
        # system is read-only), nothing else of the host; no run id, no credentials.
        mounts = {(m["Source"], m["Destination"], m["RW"]) for m in container.attrs["Mounts"]}
        own = str(spare.folder)
        assert mounts == {
            (str(data), str(data), False),
            (own, own, True),
            (str(spare.code_folder), WORKDIR, True),
            (str(spare.launcher_folder), LAUNCHER_HOME, False),
            (str(spare.artifacts_shadow), spare.artifact_root, True),  # empty, over the store's
        }
        assert spare.artifact_root == str(settings.home / "artifacts")
        assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True
        assert list(spare.code_folder.iterdir()) == []
        names = {entry.split("=", 1)[0] for entry in container.attrs["Config"]["Env"]}
        assert not names & {"MLFLOW_RUN_ID", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"}
        assert list(spare.folder.iterdir()) == []

        run_id = uuid.uuid4().hex
        run_folder = settings.home / "artifacts" / "0" / run_id / "artifacts"  # in the store
        run_folder.mkdir(parents=True)
        (run_folder / "early.txt").write_text("logged before the attempt started")
        link_artifacts(str(run_folder), spare)
        env = image_environment(spare) | {"MLFLOW_RUN_ID": run_id, "RUN_ARTIFACTS": str(run_folder)}
        request = {
            "argv": ["job.py", "probe", str(data)],
            "work_dir": WORKDIR,
            "env": env,
            "links": {str(run_folder): f"{own}/artifacts"},
            "command": f"python3 job.py probe {data}",
        }
        hand_over(spare, f"ct-{run_id}", archive_project(project, LEFT_OUT), request)
        assert container.wait(timeout=120)["StatusCode"] == 0
        output = container.logs().decode()
        [seen] = [json.loads(line[5:]) for line in output.splitlines() if line.startswith("SEEN ")]
        assert seen == {
            "name": "__main__",
            "file": f"{WORKDIR}/job.py",
            "argv": ["job.py", "probe", str(data)],
            "cwd": WORKDIR,
            "path0": WORKDIR,
            "run_id": run_id,
            "launcher_importable": False,
            "data": "a data file",
        }
        container.reload()
        assert container.name == f"ct-{run_id}"
    finally:
        release(spare, str(run_folder) if "run_folder" in locals() else "")
    # The run's folder holds what was there and what the container wrote; the
    # container and the spare's own folder are gone.
    assert not run_folder.is_symlink()
    assert sorted(p.name for p in run_folder.iterdir()) == ["early.txt", "written.txt"]
    assert not spare.folder.exists()
    assert not docker_client.containers.list(all=True, filters={"name": f"ct-{run_id}"})


@pytest.mark.slow
@pytest.mark.docker
def test_an_unused_spare_exits_after_its_idle_time_and_the_watchdog_removes_it(
    tmp_path: Path, docker_client
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    project = probe_project(tmp_path / "project")
    settings = settings_for(tmp_path, data, idle_seconds=1)
    idle = create(settings, project)
    waiting = create(settings_for(tmp_path, data, idle_seconds=600), project)
    assert idle is not None and waiting is not None
    try:
        deadline = time.monotonic() + 60
        while idle.container.status != "exited" and time.monotonic() < deadline:
            time.sleep(0.2)  # polling the engine for the condition
            idle.container.reload()
        assert idle.container.attrs["State"]["ExitCode"] == 0
        removed = remove_orphaned_containers(
            lambda run_id: True, store_label(settings.tracking_uri)
        )
        assert removed == [idle.container.name]
        waiting.container.reload()
        assert waiting.container.status == "running"  # its owner may still take it
    finally:
        release(idle, "")
        release(waiting, "")
