"""Notifications through real transports on loopback: an SMTP server (plain with
login, and STARTTLS with a private CA) and an HTTP endpoint for the JSON webhook.
A transport that fails is reported, never raised, and no secret reaches the logs."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import json
import logging
import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import Mailbox, free_port

from ct_service.notify import EmailTransport, WebhookTransport, send_all, transports
from ct_service.report import AttemptLine, Summary
from ct_service.settings import Settings, SmtpSettings

SUMMARY = Summary(
    pipeline_id="4f1c0ffee0000000000000000000000a",
    project="lenet",
    commit="0123456789abcdef",
    target="test_accuracy >= 0.8",
    budget="5 attempts",
    status="finished",
    outcome="promoted",
    reason="attempt 2 reached test_accuracy 0.91",
    model_version="3",
    url="http://mlflow.example/#/experiments/1/runs/4f1c",
    attempts=[
        AttemptLine(1, "r1", "finished", 0.47, 1, "epochs=1", "initial configuration", ""),
        AttemptLine(
            2,
            "r2",
            "finished",
            0.91,
            2,
            "epochs=2",
            "attempt 1 not converged: only one epoch trained; epochs 1 -> 2",
            "",
        ),
    ],
)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _authenticator(expected_user: str, expected_password: str, seen: list):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == expected_user
            and auth_data.password.decode() == expected_password
        )
        seen.append(ok)
        return AuthResult(success=ok)

    return authenticate


def _server_with_login(**options: object) -> tuple[Any, Mailbox, list[bool]]:
    """A started aiosmtpd server that accepts the login ct / pa55-w0rd (and records
    each login's outcome)."""
    from aiosmtpd.controller import Controller

    mailbox, logins = Mailbox(), []
    server = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=_authenticator("ct", "pa55-w0rd", logins),
        **options,
    )
    server.start()
    return server, mailbox, logins


@pytest.mark.integration
def test_email_with_login_reaches_a_real_smtp_server(caplog, tmp_path: Path):

    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server, mailbox, logins = _server_with_login(
        tls_context=context, require_starttls=True, auth_require_tls=True
    )
    try:
        smtp = SmtpSettings(
            host="127.0.0.1",
            port=server.port,
            security="starttls",
            user="ct",
            password="pa55-w0rd",
            recipients=("ops@example.com",),
            ca_file=str(cert),
        )
        with caplog.at_level(logging.DEBUG):
            assert send_all(SUMMARY, [EmailTransport(smtp)]) == {"email": "sent"}
    finally:
        server.stop()
    assert logins == [True]
    [message] = mailbox.messages
    assert message["Subject"] == "ct-service: lenet pipeline 4f1c0ffe promoted"
    body = message.get_content().replace("\r\n", "\n")
    assert "1  finished  0.4700  1       epochs=1       initial configuration\n" in body
    assert "2  finished  0.9100  2       epochs=2       attempt 1 not converged" in body
    assert SUMMARY.url in body
    assert "pa55-w0rd" not in caplog.text


@pytest.mark.integration
@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_email_over_tls_with_a_private_ca(tmp_path: Path, security: str):
    from aiosmtpd.controller import Controller

    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    mailbox = Mailbox()
    tls = (
        {"tls_context": context, "require_starttls": True}
        if security == "starttls"
        else {"ssl_context": context}  # TLS from the first byte (SMTPS)
    )
    server = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **tls)
    server.start()
    try:
        smtp = SmtpSettings(
            host="127.0.0.1",
            port=server.port,
            security=security,
            recipients=("ops@example.com",),
            ca_file=str(cert),
        )
        assert send_all(SUMMARY, [EmailTransport(smtp)]) == {"email": "sent"}
        untrusted = SmtpSettings(
            host="127.0.0.1", port=server.port, security=security, recipients=("ops@example.com",)
        )
        assert send_all(SUMMARY, [EmailTransport(untrusted)])["email"].startswith(
            "failed: SSLCertVerificationError"
        )
    finally:
        server.stop()
    assert len(mailbox.messages) == 1


class _Hook(BaseHTTPRequestHandler):
    received: list = []
    status = 200
    plan: list[int] = []  # statuses to answer first, in order

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(type(self).plan.pop(0) if type(self).plan else type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook_server():
    _Hook.received, _Hook.status, _Hook.plan = [], 200, []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.mark.integration
def test_webhook_posts_slack_compatible_json(hook_server):
    url = f"http://127.0.0.1:{hook_server.server_port}/services/T000/B000/SECRET-TOKEN"
    assert send_all(SUMMARY, [WebhookTransport(url, 5)]) == {"webhook": "sent"}
    [(path, content_type, payload)] = _Hook.received
    assert path.endswith("SECRET-TOKEN") and content_type == "application/json"
    assert payload["text"].startswith("ct-service: lenet pipeline 4f1c0ffe promoted")
    assert [a["number"] for a in payload["pipeline"]["attempts"]] == [1, 2]


@pytest.mark.integration
def test_failing_transports_are_reported_not_raised_and_leak_no_secret(hook_server, caplog):
    _Hook.status = 500
    waits: list[float] = []
    secret_url = f"http://127.0.0.1:{hook_server.server_port}/hooks/SECRET-TOKEN"
    closed = SmtpSettings(
        host="127.0.0.1",
        port=free_port(),
        security="starttls",
        user="ct",
        password="pa55-w0rd",
        recipients=("ops@example.com",),
        timeout_seconds=2,
    )
    with caplog.at_level(logging.DEBUG):
        chat = WebhookTransport(secret_url, 5, sleep=waits.append)
        results = send_all(SUMMARY, [EmailTransport(closed), chat])
    assert results == {
        "email": "failed: ConnectionRefusedError: Connection refused",
        "webhook": "failed: HTTP 500, 3 tries",  # transient: tried again, with backoff
    }
    assert waits == [1.0, 2.0]
    assert "SECRET-TOKEN" not in caplog.text and "pa55-w0rd" not in caplog.text
    assert "notification via webhook failed: HTTP 500, 3 tries" in caplog.text


@pytest.mark.integration
def test_transports_follow_the_settings():
    assert transports(Settings()) == []
    configured = Settings.from_env(
        {
            "CT_SMTP_HOST": "mail",
            "CT_MAIL_TO": "a@example.com",
            "CT_NOTIFY_WEBHOOK_URL": "https://hooks.example.com/x",
        }
    )
    assert [t.name for t in transports(configured)] == ["email", "webhook"]
    no_recipients = Settings.from_env({"CT_SMTP_HOST": "mail"})
    assert transports(no_recipients) == []


@pytest.mark.integration
def test_a_chat_server_that_fails_for_a_while_gets_the_message(hook_server):
    _Hook.plan = [503, 502]
    url = f"http://127.0.0.1:{hook_server.server_port}/hooks/T"
    waits: list[float] = []
    chat = WebhookTransport(url, 5, sleep=waits.append)
    assert send_all(SUMMARY, [chat]) == {"webhook": "sent"}
    assert len(_Hook.received) == 3 and waits == [1.0, 2.0]


@pytest.mark.integration
def test_a_chat_server_that_refuses_the_message_is_not_asked_again(hook_server):
    _Hook.status = 404
    url = f"http://127.0.0.1:{hook_server.server_port}/hooks/T"
    chat = WebhookTransport(url, 5, sleep=lambda seconds: None)
    assert send_all(SUMMARY, [chat]) == {"webhook": "failed: HTTP 404 (permanent)"}
    assert len(_Hook.received) == 1


@pytest.mark.integration
def test_no_smtp_password_is_sent_without_tls(caplog):
    """The settings refuse CT_SMTP_USER without CT_SMTP_SECURITY; so does the transport,
    before it connects: the server never sees a login."""

    server, mailbox, logins = _server_with_login(auth_require_tls=False)
    try:
        plain = SmtpSettings(
            host="127.0.0.1",
            port=server.port,
            user="ct",
            password="pa55-w0rd",
            recipients=("ops@example.com",),
        )
        result = send_all(SUMMARY, [EmailTransport(plain)])
    finally:
        server.stop()
    assert result == {"email": "failed: refusing to send the SMTP password without TLS"}
    assert logins == [] and mailbox.messages == []


# -- what a run wrote is shown, never obeyed ----------------------------------------


class _Envelopes(Mailbox):
    """Keeps each message's envelope recipients too: whom the mail was delivered to."""

    def __init__(self) -> None:
        super().__init__()
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.recipients.append(list(envelope.rcpt_tos))
        return await super().handle_DATA(server, session, envelope)


def _written_by_training(project: str, failure: str) -> Summary:
    """SUMMARY with a project name and a failure line as training code may set them
    (the project name tag, the last error line of its output)."""
    failed = AttemptLine(3, "r3", "failed", None, 0, "epochs=3", "diverged", failure)
    return dataclasses.replace(SUMMARY, project=project, attempts=[*SUMMARY.attempts, failed])


@pytest.mark.integration
@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r", "\x0b", "\x85", "\u2028", "\r\n\t"])
def test_a_line_break_in_a_project_name_adds_no_header_and_the_mail_is_still_sent(newline: str):
    from aiosmtpd.controller import Controller

    mailbox = _Envelopes()
    server = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    server.start()
    try:
        smtp = SmtpSettings(host="127.0.0.1", port=server.port, recipients=("ops@example.com",))
        summary = _written_by_training(
            f"lenet{newline}Bcc: attacker@x", f"ValueError: nan{newline}Bcc: attacker@y"
        )
        assert send_all(summary, [EmailTransport(smtp)]) == {"email": "sent"}
    finally:
        server.stop()
    assert mailbox.recipients == [["ops@example.com"]]  # exactly one recipient set
    [message] = mailbox.messages
    assert "Bcc" not in message and message.get_all("To") == ["ops@example.com"]
    assert message["Subject"] == "ct-service: lenet Bcc: attacker@x pipeline 4f1c0ffe promoted"
    body = message.get_content().replace("\r\n", "\n")
    assert not [line for line in body.splitlines() if line.startswith("Bcc")]
    assert "project: lenet Bcc: attacker@x at 0123456789ab\n" in body
    assert "| failed: ValueError: nan Bcc: attacker@y\n" in body


@pytest.mark.integration
def test_chat_control_sequences_from_a_run_are_escaped(hook_server):
    failure = "RuntimeError: <!channel> see <http://evil.example|click> & <@U123> @here"
    summary = _written_by_training("lenet <!here>", failure)
    url = f"http://127.0.0.1:{hook_server.server_port}/hooks/T"
    assert send_all(summary, [WebhookTransport(url, 5)]) == {"webhook": "sent"}
    [(_, _, payload)] = _Hook.received
    text = payload["text"]
    assert "<" not in text and ">" not in text
    assert text.startswith("ct-service: lenet &lt;!here&gt; pipeline 4f1c0ffe promoted\n")
    assert (
        "| failed: RuntimeError: &lt;!channel&gt; see &lt;http://evil.example|click&gt; "
        "&amp; &lt;@\u200bU123&gt; @\u200bhere\n"
    ) in text
    assert "@here" not in text and "@U123" not in text  # no Mattermost mention either
    # the structured copy is data for scripts, left as the run wrote it
    assert payload["pipeline"]["attempts"][2]["failure"] == failure
    assert payload["pipeline"]["project"] == "lenet <!here>"
