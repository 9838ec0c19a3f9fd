"""A deadline on reading a request's body: a client that sends its body slowly (one
byte a second) gets 408 when the deadline passes, instead of holding a server thread
for as long as it likes. WSGI middleware, in front of the Flask app.

The body is read whole before the app sees it (at most the size limit and one byte
more: a larger one still gets the app's 413). Under gunicorn a timer shuts the
connection's reading side at the deadline, which wakes the read however the bytes
trickle (a per-read socket timeout would not: each byte resets it); gunicorn gives
the connection as `gunicorn.socket` in the WSGI environ. Elsewhere (the development
server, Flask's test client) the body is read without a deadline.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)
CHUNK = 64 * 1024


class BodyDeadline:
    def __init__(self, app: WSGIApplication, seconds: float, max_bytes: int):
        self.app = app
        self.seconds = seconds
        self.max_bytes = max_bytes

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        expected = _declared_length(environ)
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if expected == 0 and not chunked:
            return self.app(environ, start_response)  # no body
        if expected > self.max_bytes:
            return self.app(environ, start_response)  # the app answers 413 unread
        wanted = expected if not chunked else self.max_bytes + 1
        started = time.monotonic()
        body = self._read(environ, wanted)
        if body is None or (not chunked and len(body) < expected):
            waited = time.monotonic() - started
            log.warning("a request body was not in after %.1f s: 408", waited)
            return _timed_out(start_response, self.seconds)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.app(environ, start_response)

    def _read(self, environ: WSGIEnvironment, wanted: int) -> bytes | None:
        """Up to `wanted` bytes of the body; fewer when the client stopped sending or
        the deadline cut it off; None when the read failed."""
        connection = environ.get("gunicorn.socket")
        timer = None
        if isinstance(connection, socket.socket):
            timer = threading.Timer(self.seconds, _stop_reading, (connection,))
            timer.daemon = True
            timer.start()
        stream, parts, got = environ["wsgi.input"], [], 0
        try:
            while got < wanted:
                part = stream.read(min(CHUNK, wanted - got))
                if not part:
                    break
                parts.append(part)
                got += len(part)
        except OSError:  # cut off (gunicorn: NoMoreData), reset, or timed out
            return None
        finally:
            if timer is not None:
                timer.cancel()
        return b"".join(parts)


def _declared_length(environ: WSGIEnvironment) -> int:
    try:
        return max(int(environ.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0  # the server refuses a malformed length before it gets here


def _stop_reading(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RD)  # a blocked read returns: no more data
    except OSError:  # closed already
        pass


def _timed_out(start_response: StartResponse, seconds: float) -> list[bytes]:
    body = json.dumps({"error": f"the request body did not arrive within {seconds:g} s"})
    start_response(
        "408 Request Timeout",
        [("Content-Type", "application/json"), ("Connection", "close")],
    )
    return [body.encode()]
