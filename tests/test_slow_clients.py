"""Slow clients against the webhook as deployed (issue 29, finding 6): the real
gunicorn command with the production configuration (ct_service/webhook/gunicorn_conf.py)
on a free 127.0.0.1 port, 50 sockets that send their headers and then their body a
byte at a time, and /healthz asked all along. Bounded: the trickle stops after
TRICKLE_SECONDS and gunicorn is stopped whatever happens."""

from __future__ import annotations

import http.client
import json
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT, ct_env, free_port
from helpers import wait_for

from ct_service.webhook.push import Provider, sign

SLOW_CLIENTS = 50
BODY_SECONDS = 3.0  # the served webhook's CT_WEBHOOK_BODY_SECONDS
TRICKLE_SECONDS = 10.0
BYTE_EVERY = 0.25  # seconds between two bytes of one slow body
SECRET = "slow-clients-secret"
PRODUCTION = [sys.executable, "-m", "gunicorn", "-c", "python:ct_service.webhook.gunicorn_conf"]


@pytest.fixture
def webhook(tmp_path: Path, redis_url: str) -> Iterator[int]:
    """The port of `gunicorn -c python:ct_service.webhook.gunicorn_conf -b 127.0.0.1:PORT`."""
    allow_list = tmp_path / "repositories.yaml"
    allow_list.write_text(
        "repositories:\n  - {name: acme/models, provider: github,"
        " url: 'https://git.example.com/acme/models.git', secret_env: HOOK_SECRET}\n"
    )
    env = ct_env(
        CT_HOME=str(tmp_path / "ct"),
        CT_BROKER_URL=redis_url,
        CT_REPOSITORIES_FILE=str(allow_list),
        CT_WEBHOOK_BODY_SECONDS=str(BODY_SECONDS),
        HOOK_SECRET=SECRET,
    )
    port = free_port()
    log_path = tmp_path / "webhook.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [*PRODUCTION, "-b", f"127.0.0.1:{port}"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: health_seconds(port) < 5, 60, "the webhook", log_path)
            yield port
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def health_seconds(port: int, timeout: float = 5.0) -> float:
    """How long GET /healthz took to answer 200 (`timeout` when it did not)."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/healthz")
        if connection.getresponse().status != 200:
            return timeout
    except OSError:
        return timeout
    finally:
        connection.close()
    return time.monotonic() - started


@dataclass
class SlowBody:
    """A connection that sent a push's headers and sends its 1,000-byte body slowly."""

    port: int
    sock: socket.socket = field(init=False)
    opened: float = field(init=False)
    answer: bytes = b""

    def __post_init__(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.opened = time.monotonic()
        self.sock.sendall(
            b"POST /hooks HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: push\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )

    def cut_off(self) -> bool:
        """Whether the server answered or closed the connection (read what it sent)."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        if not readable:
            return False
        try:
            self.answer = self.sock.recv(4096) or b"(closed)"
        except OSError:
            self.answer = b"(reset)"
        return True

    def send_a_byte(self) -> bool:
        try:
            self.sock.sendall(b" ")
        except OSError:
            self.answer = self.answer or b"(reset)"
            return False
        return True


@dataclass
class Trickle:
    """SLOW_CLIENTS slow bodies at all times (one cut off is replaced at once), for
    TRICKLE_SECONDS; what happened to each."""

    port: int
    ended: list[tuple[float, bytes]] = field(default_factory=list)  # (lived, answer)
    longest_open: float = 0.0

    def run(self) -> None:
        clients = [SlowBody(self.port) for _ in range(SLOW_CLIENTS)]
        stop = time.monotonic() + TRICKLE_SECONDS
        while time.monotonic() < stop:
            for n, client in enumerate(clients):
                if client.cut_off() or not client.send_a_byte():
                    self.ended.append((time.monotonic() - client.opened, client.answer))
                    client.sock.close()
                    clients[n] = SlowBody(self.port)
            time.sleep(BYTE_EVERY)  # the pace of the attack, not a synchronisation
        now = time.monotonic()
        self.longest_open = max(now - client.opened for client in clients)
        for client in clients:
            client.sock.close()


@pytest.mark.integration
def test_health_answers_within_a_second_while_50_clients_trickle_their_bodies(webhook):
    trickle = Trickle(webhook)
    attack = threading.Thread(target=trickle.run)
    attack.start()
    waits = []
    try:
        time.sleep(1.0)  # let every slow client connect and start its body
        while attack.is_alive():
            waits.append(health_seconds(webhook))
            time.sleep(0.2)
    finally:
        attack.join()
    assert max(waits) < 1.0, f"/healthz took up to {max(waits):.1f} s: {waits}"
    assert len(waits) >= 5
    # every slow body was cut off with 408 after the deadline, none held for longer
    assert trickle.ended, "no slow body was cut off"
    for lived, answer in trickle.ended:
        assert answer.startswith(b"HTTP/1.1 408") or answer in (b"(closed)", b"(reset)"), answer
        assert BODY_SECONDS - 0.5 <= lived <= BODY_SECONDS + 2.0, (lived, answer)
    assert any(answer.startswith(b"HTTP/1.1 408") for _, answer in trickle.ended)
    assert trickle.longest_open <= BODY_SECONDS + 2.0


@pytest.mark.integration
def test_a_push_sent_at_once_is_read_whole_through_the_deadline(webhook):
    """The deadline hands the app the body it read: a signed ping, sent normally and in
    chunks, is verified and answered."""
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    headers = {
        "X-GitHub-Event": "ping",
        "Content-Type": "application/json",
        **sign(Provider.GITHUB, body, SECRET),
    }
    for send_chunked in (False, True):
        connection = http.client.HTTPConnection("127.0.0.1", webhook, timeout=10)
        if send_chunked:
            connection.request("POST", "/hooks", body=iter([body[:10], body[10:]]), headers=headers)
        else:
            connection.request("POST", "/hooks", body=body, headers=headers)
        answer = connection.getresponse()
        assert (answer.status, json.loads(answer.read())) == (200, {"status": "pong"})
        connection.close()
