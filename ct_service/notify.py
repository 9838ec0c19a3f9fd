"""Notifications at the end of a pipeline: e-mail over SMTP and a JSON webhook
(Slack-compatible). A failing transport is logged and reported back, never raised,
and no secret (password, webhook URL) ever reaches a log line or a result.

What a run wrote is shown, never obeyed: the summary renders each text on one line
(report.one_line), the subject is put on one line again here, so no header can be
added to a mail; the chat text is escaped as Slack documents (&, <, > as &amp;,
&lt;, &gt;: `<!channel>` or `<http://evil|click>` are shown, not acted on, in Slack
and in Mattermost, which reads the same sequences) and an @ is followed by a
zero-width space, so that `@channel` or `@here` notifies no one in Mattermost."""

from __future__ import annotations

import html
import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, Protocol

from ct_service import search_picture
from ct_service.report import one_line
from ct_service.settings import Settings, SmtpSettings

log = logging.getLogger(__name__)


class Message(Protocol):
    """What a transport sends: a pipeline's report.Summary, or a report.Notice."""

    @property
    def pipeline_id(self) -> str: ...
    @property
    def picture(self) -> bytes: ...
    def headline(self) -> str: ...
    def text(self) -> str: ...
    def to_json(self) -> dict[str, Any]: ...


class Transport(Protocol):
    name: str

    def send(self, summary: Message) -> None: ...


class EmailTransport:
    name = "email"

    def __init__(self, smtp: SmtpSettings):
        self.smtp = smtp

    def send(self, summary: Message) -> None:
        message = EmailMessage()
        message["Subject"] = one_line(summary.headline())
        message["From"] = self.smtp.sender
        message["To"] = ", ".join(self.smtp.recipients)
        message.set_content(summary.text())
        if summary.picture:  # shown inline: an HTML alternative with the picture related
            cid = make_msgid(domain="ct-service")
            message.add_alternative(
                f"<pre>{html.escape(summary.text())}</pre>"
                f'<img src="cid:{cid[1:-1]}" alt="the search: validation curves">',
                subtype="html",
            )
            html_part = message.get_body(preferencelist=("html",))
            if isinstance(html_part, EmailMessage):
                html_part.add_related(
                    summary.picture, "image", "png", cid=cid, filename=search_picture.FILE_NAME
                )
        smtp = self.smtp
        context = ssl.create_default_context(cafile=smtp.ca_file or None)
        if smtp.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=smtp.timeout_seconds, context=context
            )
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds)
        if smtp.user and smtp.security == "none":
            raise PlaintextLogin("refusing to send the SMTP password without TLS")
        with client:
            if smtp.security == "starttls":
                client.starttls(context=context)
            if smtp.user:
                client.login(smtp.user, smtp.password)
            client.send_message(message)


class PlaintextLogin(Exception):
    """An SMTP login was asked for without TLS (settings refuse it; so does this)."""


class WebhookTransport:
    """POSTs {"text": ..., "pipeline": {...}}; Slack and compatible chats show `text`."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        timeout_seconds: float,
        tries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.tries = tries
        self.sleep = sleep

    def send(self, summary: Message) -> None:
        """POST it; a timeout, a refused connection, 429 or a 5xx is tried again
        (backoff 1 s, 2 s, ...), any other answer is final."""
        body = json.dumps({"text": chat_text(summary.text()), "pipeline": summary.to_json()})
        data = body.encode()
        for attempt in range(1, self.tries + 1):
            request = urllib.request.Request(
                self.url, data=data, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                    response.read()
                return
            except Exception as error:
                if not _transient(error):
                    raise PermanentFailure(_describe(error)) from error
                if attempt == self.tries:
                    raise GaveUp(f"{_describe(error)}, {self.tries} tries") from error
                self.sleep(2.0 ** (attempt - 1))


def chat_text(text: str) -> str:
    """`text` as a Slack or Mattermost message shows it: &, < and > escaped as Slack's
    message formatting asks, and no @ that mentions anyone."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("@", "@\u200b")


class PermanentFailure(Exception):
    """The chat server refused the message for good (a 4xx): no retry."""


class GaveUp(Exception):
    """Transient failures (timeouts, 5xx) every time the message was tried."""


def _transient(error: BaseException) -> bool:
    if isinstance(error, urllib.error.HTTPError):
        return error.code == 429 or error.code >= 500
    return isinstance(error, (urllib.error.URLError, TimeoutError, ConnectionError))


def transports(settings: Settings) -> list[Transport]:
    found: list[Transport] = []
    if settings.smtp.enabled:
        found.append(EmailTransport(settings.smtp))
    if settings.notify_webhook_url:
        found.append(
            WebhookTransport(settings.notify_webhook_url, settings.notify_webhook_timeout_seconds)
        )
    return found


def send_all(summary: Message, chosen: list[Transport]) -> dict[str, str]:
    """Send through every transport; returns {transport: "sent" | "failed: why"}."""
    results: dict[str, str] = {}
    for transport in chosen:
        try:
            transport.send(summary)
        except Exception as error:  # a notification must never fail the pipeline
            results[transport.name] = f"failed: {_describe(error)}"
            log.warning("notification via %s failed: %s", transport.name, _describe(error))
        else:
            results[transport.name] = "sent"
            log.info(
                "notification via %s sent for pipeline %s", transport.name, summary.pipeline_id
            )
    return results


def _describe(error: BaseException) -> str:
    """The error's kind and code, never its full text (it may quote a URL with a token)."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, urllib.error.URLError):
        why = getattr(error.reason, "strerror", "") or "unreachable"
        return f"{type(error.reason).__name__}: {why}"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"SMTP {error.smtp_code}"
    if isinstance(error, OSError):
        return f"{type(error).__name__}: {error.strerror or 'connection failed'}"
    if isinstance(error, PermanentFailure):
        return f"{error} (permanent)"
    if isinstance(error, (GaveUp, PlaintextLogin)):
        return str(error)
    return type(error).__name__
