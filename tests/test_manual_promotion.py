"""A project whose ct.yaml says `promotion: manual`, run end to end as a user runs it
(`ct-service run`, embedded: a real worker, MLflow on SQLite), with the chat
notification sent to a local HTTP server that keeps what it receives: its pipelines
never move @production by themselves; people are told the comparison and the command
to run; `ct-service approve` does it once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import mlflow
import pytest
from conftest import ROOT, ct_env

from ct_service.registry import aliases

TRAIN = """\
from pathlib import Path
import mlflow
accuracy = float((Path(__file__).parent / "accuracy.txt").read_text())
mlflow.log_metric("test_accuracy", accuracy)
class Same(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return model_input
mlflow.pyfunc.log_model(name="model", python_model=Same())
"""


class _Chat(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def chat():
    _Chat.received = []
    server = HTTPServer(("127.0.0.1", 0), _Chat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/chat"
    server.shutdown()


def project(folder: Path) -> Path:
    folder.mkdir()
    (folder / "MLproject").write_text(
        "name: careful\nentry_points:\n  main:\n    command: python train.py\n"
    )
    (folder / "train.py").write_text(TRAIN)
    (folder / "ct.yaml").write_text("promotion: manual\n")
    return folder


def ct(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ct_service.cli", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_a_manual_project_waits_for_approval_and_people_are_told_what_to_run(tmp_path, chat):
    folder = project(tmp_path / "careful")
    env = ct_env(CT_HOME=str(tmp_path / "ct"), CT_NOTIFY_WEBHOOK_URL=chat, CT_MAX_ATTEMPTS="1")
    (folder / "accuracy.txt").write_text("0.9")
    first = ct(env, "run", str(folder), "--threshold", "0.5", "--json")
    assert first.returncode == 0, first.stderr[-2000:]  # the target was reached
    summary = json.loads(first.stdout)
    assert summary["outcome"] == "awaiting-approval"
    assert summary["model_version"] == "1"
    command = "ct-service approve careful 1"
    assert command in summary["reason"]
    assert "test_accuracy 0.9 against no version in production" in summary["reason"]
    [message] = _Chat.received
    assert message["text"].startswith("ct-service: careful pipeline ")
    assert "awaiting-approval" in message["text"] and command in message["text"]

    uri = f"sqlite:///{tmp_path / 'ct' / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri, uri)
    assert aliases(client, "careful") == {
        "production": "",
        "previous-production": "",
        "candidate": "1",
    }
    approved = ct(env, "approve", "careful", "1")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith("version 1 approved by ")
    assert aliases(client, "careful")["production"] == "1"

    (folder / "accuracy.txt").write_text("0.95")
    second = ct(env, "run", str(folder), "--threshold", "0.5", "--json")
    assert second.returncode == 0, second.stderr[-2000:]
    assert json.loads(second.stdout)["outcome"] == "awaiting-approval"
    assert aliases(client, "careful") == {
        "production": "1",  # the better model waits: production did not move by itself
        "previous-production": "",
        "candidate": "2",
    }
    assert "against production's 0.9 (version 1)" in _Chat.received[-1]["text"]

    listed = ct(env, "history", "careful", "--json")
    assert listed.returncode == 0, listed.stderr
    events = json.loads(listed.stdout)["events"]
    assert [e["move"] for e in events] == ["proposed", "approved", "proposed"]
    proposed = events[0]
    assert proposed["cause"]["trigger"] == "run" and proposed["cause"]["person"]
    assert proposed["cause"]["pipeline_id"] == json.loads(second.stdout)["pipeline_id"]
    assert (proposed["candidate_score"], proposed["production_score"]) == (0.95, 0.9)
