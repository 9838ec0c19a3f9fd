"""A git server over HTTPS for the stack test: git's own smart-HTTP backend
(`git http-backend`, as a CGI program) behind Python's HTTP server, with the test's
certificate. Usage: git_https.py ROOT CERT KEY PORT; serves every repository under ROOT."""

from __future__ import annotations

import http.server
import os
import ssl
import subprocess
import sys

ROOT, CERT, KEY, PORT = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
# Any commit may be fetched by its SHA (as GitHub allows), whoever owns the files.
GIT_CONFIG = {"uploadpack.allowAnySHA1InWant": "true", "safe.directory": "*"}


class GitBackend(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._backend()

    def do_POST(self) -> None:
        self._backend()

    def _backend(self) -> None:
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        environment = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": ROOT,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "REMOTE_ADDR": self.client_address[0],
            "GIT_CONFIG_COUNT": str(len(GIT_CONFIG)),
        }
        for index, (key, value) in enumerate(GIT_CONFIG.items()):
            environment[f"GIT_CONFIG_KEY_{index}"] = key
            environment[f"GIT_CONFIG_VALUE_{index}"] = value
        output = subprocess.run(
            ["git", "http-backend"], input=body, env=environment, capture_output=True
        ).stdout
        separator = b"\r\n\r\n" if b"\r\n\r\n" in output else b"\n\n"
        head, _, payload = output.partition(separator)
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("0.0.0.0", PORT), GitBackend)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT, KEY)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
