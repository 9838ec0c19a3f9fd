"""A pushed Dockerfile cannot make the Docker daemon fetch from the host's network
(dockerfile.py, images.py): the daemon fetches ADD's URLs and git sources and pulls
images in the host's network whatever CT_DOCKER_BUILD_NETWORK says, so such a
Dockerfile is refused, naming the line and the reason, before anything is built. A
table of Dockerfiles read as the engine reads them, then a real engine and a loopback
HTTP listener that must never see a request."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import ct_env

from ct_service.exceptions import ProjectError
from ct_service.execution import images
from ct_service.execution.dockerfile import registry_host, review, review_triggers
from ct_service.execution.environment import choose
from ct_service.settings import DockerSettings

LOOPBACK = "http://127.0.0.1:8000/payload"
REMOTE = "a remote source: the Docker daemon would fetch it in the host's network"
NOT_PLAIN = "not a plain path of the project"


# -- read as the engine reads it ---------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("dockerfile", "line", "reason"),
    [
        (f"FROM x\nADD {LOOPBACK} /payload\n", 2, f"ADD {LOOPBACK}: {REMOTE}"),
        ("from x\nadd HTTP://127.0.0.1/x /x\n", 2, f"ADD HTTP://127.0.0.1/x: {REMOTE}"),  # any case
        ("FROM x\n\tAdD  https://example.com/x  /x\n", 2, f"ADD https://example.com/x: {REMOTE}"),
        (f"FROM x\nADD --checksum=sha256:{'0' * 64} https://example.com/x /x\n", 2, REMOTE),
        (
            "FROM x\nADD --chown=1000:1000 --chmod=644 http://x/y /z\n",
            2,
            f"ADD http://x/y: {REMOTE}",
        ),
        (
            'FROM x\nADD --chown="a b" http://x/y /z\n',
            2,
            f"ADD http://x/y: {REMOTE}",
        ),  # a quoted flag
        (
            'FROM x\nADD ["http://127.0.0.1/x", "/x"]\n',
            2,
            f"ADD http://127.0.0.1/x: {REMOTE}",
        ),  # JSON
        (
            'FROM x\nADD [ "h\\u0074tp://127.0.0.1/x" , "/x" ]\n',
            2,
            f"ADD http://127.0.0.1/x: {REMOTE}",
        ),
        (
            "FROM x\nADD a.txt http://127.0.0.1/x /x\n",
            2,
            f"ADD http://127.0.0.1/x: {REMOTE}",
        ),  # second source
        (
            "FROM x\nADD http://127.0.0.1\\\n:8000/x /x\n",
            2,
            f"ADD http://127.0.0.1:8000/x: {REMOTE}",
        ),
        # comments and blank lines inside a continuation are skipped, not ends
        (
            "FROM x\nADD \\\n# a comment\n\n   http://127.0.0.1/x /x\n",
            2,
            f"ADD http://127.0.0.1/x: {REMOTE}",
        ),
        ("FROM x\r\nADD http://127.0.0.1/x /x\r\n", 2, REMOTE),  # CRLF
        ("\ufeffFROM x\nADD http://127.0.0.1/x /x", 2, REMOTE),  # a BOM, no final newline
        ("FROM x\n\u00a0ADD http://127.0.0.1/x /x\n", 2, REMOTE),  # what Go trims as a space
        # the escape directive: a backslash no longer continues a line, a backtick does
        ("# escape=`\nFROM x\nRUN echo \\\nADD http://127.0.0.1/x /y\n", 4, REMOTE),
        (
            "# Escape = `\nFROM x\nADD http://127.0.0.1/`\nx /y\n",
            3,
            f"ADD http://127.0.0.1/x: {REMOTE}",
        ),
        ("FROM x\nADD git@github.com:acme/repo.git /src\n", 2, REMOTE),
        ("FROM x\nADD https://github.com/acme/repo.git#main /src\n", 2, REMOTE),
        ("FROM x\nADD git://example.com/repo /src\n", 2, REMOTE),
        (
            "FROM x\nONBUILD ADD http://127.0.0.1/x /y\n",
            2,
            f"ONBUILD ADD http://127.0.0.1/x: {REMOTE}",
        ),
        ("FROM x\nonbuild add --chown=1 http://127.0.0.1/x /y\n", 2, REMOTE),
        # what only the build resolves could turn into a URL
        ("FROM x\nARG U=http://127.0.0.1/x\nADD $U /x\n", 3, f"ADD $U: {NOT_PLAIN}"),
        ("FROM x\nENV S=http\nADD ${S}://127.0.0.1/x /x\n", 3, NOT_PLAIN),
        ("FROM x\nADD h\\ttp://127.0.0.1/x /x\n", 2, NOT_PLAIN),  # the shell's escape: http://
        ('FROM x\nADD "http"://127.0.0.1/x /x\n', 2, NOT_PLAIN),
        ("FROM x\nADD ['http://127.0.0.1/x', '/x']\n", 2, NOT_PLAIN),  # not JSON: words
        ("FROM x\nADD <<EOF /x\nhello\nEOF\n", 2, NOT_PLAIN),
        ("FROM x\nADD [1, 2]\n", 2, "a JSON array of something else than strings"),
        # lines Docker versions read differently
        ("FROM x\nRUN echo \\\\\nADD http://127.0.0.1/x /y\n", 2, "ends in two escape characters"),
        ("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\n", 2, "an escape directive"),
        ("# escape=`x\nFROM x\n", 1, "an escape directive"),
        # images named so that only the build can tell what they are
        ("FROM ${B:-127.0.0.1:5000/x}\n", 1, "not a plain image reference"),
        ('FROM "127.0.0.1:5000/x"\n', 1, "not a plain image reference"),
        ("FROM $UNDECLARED\n", 1, "$UNDECLARED is not a global ARG"),
        ("FROM x\nARG B=127.0.0.1:5000/x\nFROM $B\n", 3, "$B is not a global ARG"),  # a stage's ARG
        ('ARG B=127.0.0.1:5000/x\nARG A="x B=python y"\nFROM $B\n', 3, "$B is not a global ARG"),
        ("FROM x\nCOPY --from=$IMAGE /a /b\n", 2, "COPY --from $IMAGE: not a plain image"),
        ("FROM x\nRUN --mount='type=bind,\"from=y\"' true\n", 2, "quoted fields cannot be checked"),
        ("ONBUİLD ADD http://127.0.0.1/x /y\n", 1, "is not ASCII"),  # Go lowers İ to i
    ],
)
def test_a_dockerfile_that_would_make_the_daemon_fetch_is_refused_with_its_line(
    dockerfile: str, line: int, reason: str
) -> None:
    refusals = review(dockerfile).refusals
    assert refusals, dockerfile
    assert refusals[0].line == line
    assert reason in refusals[0].reason


@pytest.mark.unit
@pytest.mark.parametrize(
    "dockerfile",
    [
        (Path(__file__).parent.parent / "projects" / "lenet" / "Dockerfile").read_text(),
        images.DECLARED_DOCKERFILE,
        'FROM x\nADD requirements.txt /opt/ct/\nADD --chown=1:1 ["requirements.txt", "/x/"]\n',
        "FROM x\nADD requirements*.txt ca.cr[t] python_env.yaml /x/\nADD . /x\n",
        "FROM x\nADD --link --chmod=644 conda.yaml /x/\n",
        "FROM x\nRUN curl -fsS http://example.com/x | sh\n",  # RUN: the operator's build network
        "FROM x\n# ADD http://127.0.0.1/x /y\nLABEL url=http://127.0.0.1/x\n",
        "FROM x\nRUN echo ADD \\\n    http://127.0.0.1/x\n",  # a word of RUN
        "FROM x\nCOPY http://127.0.0.1/x /x\n",  # the engine refuses URLs in COPY itself
        "# escape=\\\nFROM x\nADD a.txt /b\n",
        "# syntax=docker/dockerfile:1\n# escape=\\\nFROM x\n",
        "FROM x AS build\nFROM build\nCOPY --from=build /a /b\nCOPY --from=0 /a /b\n",
        "FROM x\nRUN --mount=type=cache,target=/root/.cache/pip pip install y\n",
        'FROM x\nCMD ["python", "http://127.0.0.1/x"]\n',
    ],
)
def test_a_dockerfile_the_daemon_fetches_nothing_for_is_accepted(dockerfile: str) -> None:
    assert review(dockerfile, {"BASE_IMAGE": "ct-base:bookworm"}).refusals == ()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("dockerfile", "build_args", "expected"),
    [
        (
            "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\n",
            {},
            [("FROM", "python:3.11-slim")],
        ),
        (
            "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\n",
            {"BASE_IMAGE": "ct-base:bookworm"},
            [("FROM", "ct-base:bookworm")],
        ),
        ("ARG B=127.0.0.1:5000/x\nFROM $B\n", {}, [("FROM", "127.0.0.1:5000/x")]),
        ("ARG T\nFROM python:3.11$T\n", {"T": "-slim"}, [("FROM", "python:3.11-slim")]),
        ("FROM scratch\nFROM x AS a\nFROM A\n", {}, [("FROM", "x")]),  # stages are no images
        (
            "FROM x\nCOPY --from=127.0.0.1:5000/y /a /b\n",
            {},
            [("FROM", "x"), ("COPY --from", "127.0.0.1:5000/y")],
        ),
        (
            "FROM x\nCOPY --FROM=later /a /b\nFROM y AS later\n",
            {},
            [("FROM", "x"), ("COPY --from", "later"), ("FROM", "y")],
        ),
        (
            "FROM x\nRUN --mount=type=bind,from=localhost/y,target=/y true\n",
            {},
            [("FROM", "x"), ("RUN --mount from", "localhost/y")],
        ),
        (
            "# syntax=127.0.0.1:5000/frontend\nFROM x\n",
            {},
            [("# syntax", "127.0.0.1:5000/frontend"), ("FROM", "x")],
        ),
        (
            "FROM x\nONBUILD COPY --from=y /a /b\n",
            {},
            [("FROM", "x"), ("ONBUILD COPY --from", "y")],
        ),
        (
            'FROM x\nRUN --mount="type=bind,from=y" true\n',
            {},
            [("FROM", "x"), ("RUN --mount from", "y")],
        ),
    ],
)
def test_the_images_the_daemon_would_resolve_are_named_with_their_args_resolved(
    dockerfile: str, build_args: dict[str, str], expected: list[tuple[str, str]]
) -> None:
    found = review(dockerfile, build_args)
    assert found.refusals == ()
    assert [(image.instruction, image.name) for image in found.images] == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    ("reference", "host"),
    [
        ("python:3.11-slim", ""),
        ("acme/trainer:3", ""),
        ("docker.io/library/python", ""),
        ("index.docker.io/acme/x", ""),
        ("python@sha256:" + "0" * 64, ""),
        ("localhost/x", "localhost"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000"),
        ("ghcr.io/acme/x:1", "ghcr.io"),
        ("Registry/x", "Registry"),
        ("redis:6379/x", "redis:6379"),
    ],
)
def test_the_registry_host_of_an_image_reference(reference: str, host: str) -> None:
    assert registry_host(reference) == host


@pytest.mark.unit
def test_a_base_images_onbuild_triggers_are_read_like_onbuild_lines() -> None:
    found = review_triggers(
        ["RUN true", f"ADD {LOOPBACK} /x", "COPY --from=127.0.0.1:5000/y /a /b"]
    )
    assert [(r.line, r.reason.split(":")[0]) for r in found.refusals] == [(2, "ONBUILD ADD http")]
    assert [(i.instruction, i.name) for i in found.images] == [
        ("ONBUILD COPY --from", "127.0.0.1:5000/y")
    ]


# -- a real engine and a loopback listener -------------------------------------------


class _Listener(BaseHTTPRequestHandler):
    """A service on the host's loopback: answers anything, keeps each request's path."""

    seen: list[str] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        self.wfile.write(b"the loopback service's answer")

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[int]:
    _Listener.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Listener)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every image build asked of the engine through the Docker SDK, still done."""
    from docker.models.images import ImageCollection

    asked: list[dict] = []
    build = ImageCollection.build

    def recorded(self, **options):
        asked.append(options)
        return build(self, **options)

    monkeypatch.setattr(ImageCollection, "build", recorded)
    return asked


def _project(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir()
    (folder / "MLproject").write_text(
        "name: pushed\nentry_points:\n  main:\n    command: python train.py\n"
    )
    (folder / "train.py").write_text("print('never runs')\n")
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


SETTINGS = DockerSettings(base_image="ct-base:bookworm", build_network="none")


@pytest.mark.slow
@pytest.mark.docker
def test_a_pushed_dockerfile_adding_from_a_loopback_listener_is_refused_before_any_build(
    tmp_path: Path, docker_client, listener: int, builds: list[dict]
) -> None:
    url = f"http://127.0.0.1:{listener}/payload"
    # What the refusal prevents: the daemon fetches it, in a build without a network.
    image, _ = docker_client.images.build(
        fileobj=io.BytesIO(f"FROM ct-base:bookworm\nADD {url} /payload\n".encode()),
        network_mode="none",
        rm=True,
        forcerm=True,
    )
    docker_client.images.remove(image.id, force=True)
    assert _Listener.seen == ["/payload"]
    _Listener.seen, builds[:] = [], []

    dockerfile = (
        "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\n"
        f"COPY requirements.txt /opt/\nadd --chown=1:1 \\\n  {url} /payload\n"
    )
    folder = _project(tmp_path / "pushed", {"Dockerfile": dockerfile, "requirements.txt": ""})
    with pytest.raises(ProjectError) as refused:
        images.ensure(docker_client, choose(folder), "pushed", SETTINGS)
    assert str(refused.value).startswith(f"Dockerfile line 4: ADD {url}: {REMOTE}")
    assert builds == [] and _Listener.seen == []  # nothing built, nothing fetched

    # The pipeline of that project fails with the reason.
    env = ct_env(
        CT_HOME=str(tmp_path / "ct"),
        CT_EXECUTION="docker",
        CT_MAX_ATTEMPTS="1",
        CT_DOCKER_BASE_IMAGE="ct-base:bookworm",
        CT_DOCKER_BUILD_NETWORK="none",
    )
    run = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "run", str(folder), "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = json.loads(run.stdout)
    assert summary["outcome"] == "failed", run.stderr[-2000:]
    assert f"ProjectError: Dockerfile line 4: ADD {url}: {REMOTE}" in summary["reason"]
    assert _Listener.seen == []


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize(
    ("files", "reason"),
    [
        (
            {"Dockerfile": "FROM 127.0.0.1:{port}/trainer\n"},
            "Dockerfile line 1: FROM 127.0.0.1:{port}/trainer: not on this Docker engine, and the Docker daemon would pull it from 127.0.0.1:{port} in the host's network",
        ),
        (
            {"Dockerfile": "ARG BASE=localhost:{port}/trainer\nFROM $BASE\n"},
            "Dockerfile line 2: FROM localhost:{port}/trainer: not on this Docker engine",
        ),
        (
            {"Dockerfile": "FROM ct-base:bookworm\nCOPY --from=127.0.0.1:{port}/x /a /b\n"},
            "Dockerfile line 2: COPY --from 127.0.0.1:{port}/x: not on this Docker engine",
        ),
        (
            {
                "MLproject": "name: pushed\ndocker_env:\n  image: 127.0.0.1:{port}/trainer:1\nentry_points:\n  main:\n    command: python train.py\n"
            },
            "the MLproject's docker_env image 127.0.0.1:{port}/trainer:1 is not on this Docker engine",
        ),
    ],
)
def test_an_image_on_a_registry_host_the_push_names_is_never_pulled(
    tmp_path: Path,
    docker_client,
    listener: int,
    builds: list[dict],
    files: dict[str, str],
    reason: str,
) -> None:
    """The daemon would ask the listener for it (GET /v2/, then the manifest)."""
    folder = _project(
        tmp_path / "pushed", {k: v.replace("{port}", str(listener)) for k, v in files.items()}
    )
    with pytest.raises(ProjectError) as refused:
        images.ensure(docker_client, choose(folder), "pushed", SETTINGS)
    assert str(refused.value).startswith(reason.replace("{port}", str(listener)))
    assert builds == [] and _Listener.seen == []


@pytest.mark.slow
@pytest.mark.docker
def test_a_base_images_onbuild_trigger_that_fetches_is_refused_before_it_runs(
    tmp_path: Path, docker_client, listener: int, builds: list[dict]
) -> None:
    url = f"http://127.0.0.1:{listener}/payload"
    base = f"ct-test-onbuild:{uuid.uuid4().hex[:12]}"
    docker_client.images.build(  # registering a trigger fetches nothing
        fileobj=io.BytesIO(f"FROM ct-base:bookworm\nONBUILD ADD {url} /payload\n".encode()),
        tag=base,
        rm=True,
    )
    try:
        assert _Listener.seen == []
        builds[:] = []
        folder = _project(tmp_path / "pushed", {"Dockerfile": f"FROM {base}\nRUN true\n"})
        with pytest.raises(ProjectError) as refused:
            images.ensure(docker_client, choose(folder), "pushed", SETTINGS)
        assert str(refused.value).startswith(
            f"Dockerfile line 1: FROM {base}: its ONBUILD trigger 'ADD {url} /payload' runs in "
            f"this build: ONBUILD ADD {url}: {REMOTE}"
        )
        assert builds == [] and _Listener.seen == []
    finally:
        docker_client.images.remove(base, force=True)
