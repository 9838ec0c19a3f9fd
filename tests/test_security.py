"""The trust boundary, attacked for real: whoever can push decides what runs inside
the training container and nothing else (README, "Security")."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from ct_service.checkout import fetch_commit, redact, url_problem
from ct_service.exceptions import CheckoutError, ProjectError
from ct_service.execution.docker import data_volumes
from ct_service.execution.executor import AttemptRequest
from ct_service.execution.pushed_files import copy_project, refuse_escaping_links


def request(tmp_path: Path, **parameters: str) -> AttemptRequest:
    return AttemptRequest(str(tmp_path), "main", parameters, "0", "r" * 32, 60, tmp_path / "log")


# -- 1. mounts: only the operator's data roots, read-only ----------------------------


@pytest.mark.unit
def test_only_paths_under_the_data_roots_are_mounted_read_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "mnist").mkdir(parents=True)
    link = tmp_path / "data-link"
    link.symlink_to(data / "mnist")
    volumes = data_volumes(
        request(tmp_path, data=str(data / "mnist"), other=str(link), epochs="3"),
        (str(data),),
    )
    assert volumes == [f"{data / 'mnist'}:{link}:ro", f"{data / 'mnist'}:{data / 'mnist'}:ro"]


@pytest.mark.integration
@pytest.mark.parametrize(
    "target",
    ["/", "/etc", "/etc/passwd", "/var/run/docker.sock", "/dev/null", "SOCKET", "ESCAPING-LINK"],
)
def test_a_path_outside_the_data_roots_fails_the_attempt_and_is_not_mounted(
    tmp_path: Path, target: str
) -> None:
    """A pushed MLproject default (or -P) naming the Docker socket, the host's root,
    a device, any socket, or a link out of the data root."""
    data = tmp_path / "data"
    data.mkdir()
    if target == "SOCKET":  # a real socket inside the data root is still refused
        target = str(data / "agent.sock")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(target)
    elif target == "ESCAPING-LINK":
        (data / "escape").symlink_to("/etc")
        target = str(data / "escape")
    elif not os.path.lexists(target):
        pytest.skip(f"{target} does not exist on this machine")
    with pytest.raises(ProjectError, match="outside the data roots .* it is not mounted"):
        data_volumes(request(tmp_path, data=target), (str(data),))


@pytest.mark.unit
def test_no_data_root_means_no_host_path_is_mounted(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="CT_DATA_DIRS: none configured"):
        data_volumes(request(tmp_path, data=str(tmp_path)), ())


# -- 2. symlinks out of the checkout are refused, never followed ---------------------


@pytest.mark.integration
@pytest.mark.parametrize("target", ["/proc/self/environ", "/etc/passwd", "../../outside.txt"])
def test_a_symlink_out_of_the_project_is_refused_in_a_work_copy(
    tmp_path: Path, target: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "outside.txt").write_text("a secret of the host")
    (project / "MLproject").write_text("name: p\n")
    (project / "data").mkdir()
    (project / "data" / "leak.txt").symlink_to(target)
    with pytest.raises(ProjectError, match="data/leak.txt is a symlink to .*outside the project"):
        copy_project(project, tmp_path / "copy", None)
    assert not (tmp_path / "copy").exists()


@pytest.mark.integration
def test_links_inside_the_project_stay_links(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "conf").mkdir(parents=True)
    (project / "conf" / "base.yaml").write_text("x: 1\n")
    (project / "current.yaml").symlink_to("conf/base.yaml")
    copy_project(project, tmp_path / "copy", None)
    copied = tmp_path / "copy" / "current.yaml"
    assert copied.is_symlink() and os.readlink(copied) == "conf/base.yaml"


@pytest.mark.integration
def test_a_dockerfile_linked_out_of_the_project_is_refused_in_a_build_context(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "Dockerfile").write_text("FROM scratch\n")
    (project / "requirements.txt").symlink_to("/etc/passwd")
    with pytest.raises(ProjectError, match="requirements.txt is a symlink to /etc/passwd"):
        refuse_escaping_links(project, [project / "Dockerfile", project / "requirements.txt"])


# -- 6. git: no option in disguise, limited schemes, redaction -----------------------


@pytest.mark.integration
def test_a_url_that_is_an_option_runs_nothing(tmp_path: Path) -> None:
    proof = tmp_path / "PWNED"
    url = f"--upload-pack=touch {proof}"
    assert url_problem(url) != ""
    with pytest.raises(CheckoutError, match="cannot start with '-'"):
        fetch_commit(url, "a" * 40, tmp_path / "work")
    assert not proof.exists()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "allow_file", "problem"),
    [
        ("https://github.com/acme/models.git", False, ""),
        ("ssh://git@github.com/acme/models.git", False, ""),
        ("git@bitbucket.org:team/vision.git", False, ""),
        ("file:///srv/git/models.git", False, "local repositories need CT_GIT_ALLOW_FILE=1"),
        ("/srv/git/models.git", False, "local repositories need CT_GIT_ALLOW_FILE=1"),
        ("file:///srv/git/models.git", True, ""),
        ("http://github.com/acme/models.git", False, "must be https://, ssh:// or git@host:path"),
        ("ext::sh -c touch% /tmp/x", False, "cannot start with '-' or hold spaces"),
        ("-oProxyCommand=x", False, "cannot start with '-'"),
        ("https://ci:t0ken@example.com/a.git", False, "put no credentials in the git URL"),
    ],
)
def test_git_urls_are_limited_to_safe_schemes(url: str, allow_file: bool, problem: str) -> None:
    found = url_problem(url, allow_file)
    assert (problem in found) if problem else found == ""


@pytest.mark.unit
def test_redaction_hides_a_password_holding_an_at_sign() -> None:
    shown = redact("fatal: could not read https://ci:p@ss@w0rd@example.com/a.git")
    assert shown == "fatal: could not read https://***@example.com/a.git"
    assert "ss" not in shown.split("***")[1]


# -- 10. a slow preparation keeps its claim ------------------------------------------


@pytest.mark.integration
def test_an_attempt_being_prepared_keeps_its_claim_past_the_claims_lifetime() -> None:
    """An image build outlasting the claim: a second worker (or a message the
    watchdog enqueued again) must not start the same attempt."""
    from ct_service.keystore import MemoryKeys, held

    keys = MemoryKeys()
    assert keys.claim("claim:run:a", "worker-1", 0.3)
    with held(keys, "claim:run:a", "worker-1", 0.3):
        ends = time.monotonic() + 1.0  # three claim lifetimes
        while time.monotonic() < ends:
            assert not keys.claim("claim:run:a", "worker-2", 0.3)
            time.sleep(0.05)
    # Released by whoever holds it; a dead holder lets it expire: after the block it
    # is no longer renewed.
    expires = time.monotonic() + 2.0
    while keys.get("claim:run:a") is not None and time.monotonic() < expires:
        time.sleep(0.05)
    assert keys.claim("claim:run:a", "worker-2", 0.3)
