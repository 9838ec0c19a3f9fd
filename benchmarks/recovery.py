"""How fast a killed worker's attempt trains again, and how much training is lost.

For each round: a one-attempt LeNet pipeline runs on a `ct-service worker`; once the
attempt has logged a checkpoint, the worker's whole process group is SIGKILLed during
the next epoch, and a fresh worker is started at once (what a supervisor's restart
policy does); `ct-service beat` runs throughout. Measured per kill:

  detected   kill -> the watchdog has resumed the attempt as a new run
  running    kill -> the new run has loaded the checkpoint and trains again
  lost       epochs trained again (the one in progress at the kill, plus any that
             finished after the last checkpoint)

    python benchmarks/recovery.py --data ../shared/data/mnist [--kills 5]

Uses a private redis-server on a free port and a SQLite store in a temporary folder.
The lease settings are scaled down (see --lease) so that a round takes seconds; the
detection time is about lease + one scan interval, whatever their values.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "projects" / "lenet"
sys.path.insert(0, str(ROOT))

from ct_service.run_tags import REPLACES_RUN  # noqa: E402  (a pure module: cheap)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service(command: str, env: dict[str, str], log: Path, ready: bytes) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "ct_service.cli", command],
        env=env,
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while ready not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{command} did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    return process


def wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def one_kill(env, tracker, data: str, folder: Path, number: int) -> dict[str, float]:
    params = {
        "conv_blocks": 1,
        "filters": 4,
        "dense_units": 16,
        "epochs": 4,
        "max_train_samples": 12000,
        "data": data,
    }
    worker = service("worker", env, folder / f"worker-{number}.log", b"ready.")
    done = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "run", str(LENET), "--json"]
        + [a for k, v in params.items() for a in ("-P", f"{k}={v}")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    pipeline_id = json.loads(done.stdout)["pipeline_id"]
    experiment = tracker.pipeline(pipeline_id).experiment_id

    def runs():
        return tracker.client.search_runs([experiment], f"tags.`ct.pipeline_id` = '{pipeline_id}'")

    def checkpointed():
        return next((r for r in runs() if r.data.tags.get("checkpoint.last_epoch")), None)

    dead = wait(checkpointed, 300, "a checkpoint")
    time.sleep(random.uniform(0.2, 1.5))  # somewhere in the next epoch
    os.killpg(worker.pid, signal.SIGKILL)
    killed = time.monotonic()
    worker.wait()
    replacement = service("worker", env, folder / f"worker-{number}b.log", b"ready.")
    try:
        dead_id = dead.info.run_id

        def resumed():
            return next((r for r in runs() if r.data.tags.get(REPLACES_RUN) == dead_id), None)

        wait(resumed, 600, "the resumption")
        detected = time.monotonic() - killed
        new = wait(
            lambda: (r := resumed()) and r.data.tags.get("checkpoint.loaded_epoch") and r,
            600,
            "training",
        )
        running = time.monotonic() - killed
        checkpoint = int(tracker.client.get_run(dead_id).data.tags["checkpoint.last_epoch"])
        completed = len(tracker.client.get_metric_history(dead_id, "val_accuracy"))
        lost = completed - checkpoint + 1  # the epoch in progress at the kill, and any
        assert int(new.data.tags["checkpoint.loaded_epoch"]) == checkpoint
        wait(lambda: tracker.pipeline(pipeline_id).outcome, 600, "the pipeline's end")
    finally:
        os.killpg(replacement.pid, signal.SIGTERM)
        replacement.wait()
    return {"detected": detected, "running": running, "lost": lost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="MNIST folder (IDX files) or .npz")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()

    from ct_service.settings import Settings
    from ct_service.tracking import Tracker

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        port = free_port()
        subprocess.run(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--daemonize", "yes", "--dir", scratch],
            check=True,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "MLFLOW_"))}
        env.update(
            CT_HOME=str(folder / "ct"),
            CT_BROKER_URL=f"redis://127.0.0.1:{port}/0",
            CT_HEARTBEAT_SECONDS=str(args.heartbeat),
            CT_LEASE_SECONDS=str(args.lease),
            CT_WATCHDOG_INTERVAL_SECONDS=str(args.interval),
            CT_MAX_ATTEMPTS="1",
            CT_TARGET_THRESHOLD="0.5",
            PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        )
        tracker = Tracker(Settings(home=folder / "ct"))
        results = []
        beat: subprocess.Popen | None = None
        try:
            beat = service("beat", env, folder / "beat.log", b"beat: Starting")
            for number in range(1, args.kills + 1):
                result = one_kill(env, tracker, str(Path(args.data).resolve()), folder, number)
                print(
                    f"kill {number}: resumed after {result['detected']:.1f} s, training again "
                    f"after {result['running']:.1f} s, epochs lost {result['lost']:.0f}",
                    flush=True,
                )
                results.append(result)
        finally:
            if beat is not None:
                os.killpg(beat.pid, signal.SIGTERM)
                beat.wait()
            subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], check=False)
    print(
        f"\nlease {args.lease:g} s, heartbeat {args.heartbeat:g} s, scan every {args.interval:g} s,"
        f" {len(results)} kills"
    )
    for key, label in (("detected", "kill -> resumed (s)"), ("running", "kill -> training (s)")):
        values = [r[key] for r in results]
        print(f"  {label:22} median {statistics.median(values):6.1f}   max {max(values):6.1f}")
    lost = [r["lost"] for r in results]
    print(f"  {'epochs lost':22} median {statistics.median(lost):6.1f}   max {max(lost):6.1f}")


if __name__ == "__main__":
    main()
