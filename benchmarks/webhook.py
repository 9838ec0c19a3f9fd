"""Signed push deliveries per second and their latency: the ct-service webhook
beside a bare Flask endpoint, both under the same gunicorn settings on loopback,
alternating rounds in one run (only side-by-side ratios mean anything here).

Each webhook delivery is a new commit, so each one verifies its signature and
records the push in Redis (one round trip: claims, number, record, intake mark). No
worker runs here, so the one intake message sent stays queued and later deliveries
send none: the cost of a burst. A push arriving when no intake is queued or running
also pays one Celery publish (about 0.45 ms here).

Two loads: as fast as `--concurrency` clients can send (throughput), and paced at
`--rate` deliveries per second from a pool of senders (latency at a steady rate).

    python benchmarks/webhook.py [--requests 200] [--rounds 3] [--concurrency 4] [--rate 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

from ct_service.webhook.push import Provider, sign

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/14"
SECRET = "benchmark-secret"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn(target: str, port: int, env: dict[str, str], workers: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}", target],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            urllib.request.urlopen(
                urllib.request.Request(f"http://127.0.0.1:{port}/hooks", method="POST", data=b"{}"),
                timeout=1,
            )
        except urllib.error.HTTPError:
            return process  # it answers
        except OSError:
            time.sleep(0.1)
            continue
        return process
    raise SystemExit(f"{target} did not start")


def delivery() -> tuple[bytes, dict[str, str]]:
    commit = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "after": commit,
            "repository": {"full_name": "bench/models"},
            "commits": [
                {"id": commit, "added": [], "modified": ["projects/lenet/train.py"], "removed": []}
            ],
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        **sign(Provider.GITHUB, body, SECRET),
    }
    return body, headers


def load(port: int, count: int, concurrency: int) -> tuple[float, list[float]]:
    requests = [delivery() for _ in range(count)]
    latencies: list[float] = []
    lock = threading.Lock()

    def work(chunk: list[tuple[bytes, dict[str, str]]]) -> None:
        for body, headers in chunk:
            started = time.perf_counter()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/hooks", data=body, headers=headers, method="POST"
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status == 202, answer.status
            with lock:
                latencies.append(time.perf_counter() - started)

    threads = [
        threading.Thread(target=work, args=(requests[i::concurrency],)) for i in range(concurrency)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return count / (time.perf_counter() - started), latencies


def paced(port: int, count: int, rate: float) -> list[float]:
    """Send `count` deliveries at `rate` per second (each at its scheduled time, from a
    pool large enough that a slow answer does not delay the next send); latencies."""
    requests = [delivery() for _ in range(count)]

    def send(body: bytes, headers: dict[str, str]) -> float:
        started = time.perf_counter()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/hooks", data=body, headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 202, answer.status
        return time.perf_counter() - started

    futures = []
    with ThreadPoolExecutor(32) as pool:
        start = time.perf_counter()
        for number, (body, headers) in enumerate(requests):
            delay = start + number / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing the load, not waiting for a condition
            futures.append(pool.submit(send, body, headers))
    return [future.result() for future in futures]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for both")
    parser.add_argument("--rate", type=float, default=200, help="paced deliveries per second")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        allow_list = Path(tmp, "repositories.yaml")
        allow_list.write_text(
            "repositories:\n  - {name: bench/models, provider: github, url: 'https://git.example/bench.git',"
            " secret_env: BENCH_SECRET, project: projects/lenet}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "MLFLOW_"))}
        env.update(
            CT_HOME=str(Path(tmp, "ct")),
            CT_BROKER_URL=REDIS_URL,
            CT_REPOSITORIES_FILE=str(allow_list),
            BENCH_SECRET=SECRET,
            PYTHONPATH=str(ROOT),
        )
        # create the store once, so that no server races to create its tables
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from ct_service.settings import Settings; "
                "from ct_service.tracking import Tracker; "
                "Tracker(Settings.from_env()).experiment_id('lenet')",
            ],
            env=env,
            cwd=ROOT,
            check=True,
        )
        ports = {"webhook": free_port(), "bare flask": free_port()}
        servers = [
            gunicorn("ct_service.webhook.app:create_app()", ports["webhook"], env, args.workers),
            gunicorn("benchmarks.bare_app:app", ports["bare flask"], env, args.workers),
        ]
        results: dict[str, dict[str, list[float]]] = {
            name: {"rate": [], "latency": [], "paced": []} for name in ports
        }
        try:
            for port in ports.values():  # warm-up
                load(port, 20, args.concurrency)
            for round_number in range(1, args.rounds + 1):
                order = list(ports) if round_number % 2 else list(reversed(ports))
                for name in order:
                    rate, latencies = load(ports[name], args.requests, args.concurrency)
                    results[name]["rate"].append(rate)
                    results[name]["latency"].extend(latencies)
                    results[name]["paced"].extend(paced(ports[name], args.requests, args.rate))
                print(
                    f"round {round_number}: "
                    + "  ".join(f"{n} {results[n]['rate'][-1]:7.1f}/s" for n in ports)
                )
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=30)
            redis.Redis.from_url(REDIS_URL).flushdb()
    print(
        f"\n{args.requests} signed deliveries x {args.rounds} rounds, "
        f"{args.concurrency} clients, gunicorn -w {args.workers}"
    )
    for name in ports:
        rates, latencies = results[name]["rate"], results[name]["latency"]
        print(
            f"{name:10}  median {statistics.median(rates):7.1f} deliveries/s   "
            f"p50 {percentile(latencies, 0.5) * 1000:6.1f} ms   "
            f"p99 {percentile(latencies, 0.99) * 1000:6.1f} ms"
        )
    print(f"\npaced at {args.rate:g} deliveries/s ({args.requests} x {args.rounds} rounds)")
    for name in ports:
        paced_latencies = results[name]["paced"]
        print(
            f"{name:10}  p50 {percentile(paced_latencies, 0.5) * 1000:6.1f} ms   "
            f"p99 {percentile(paced_latencies, 0.99) * 1000:6.1f} ms"
        )
    ratio = statistics.median(results["webhook"]["rate"]) / statistics.median(
        results["bare flask"]["rate"]
    )
    print(f"\nwebhook / bare flask throughput = {ratio:.2f}")


if __name__ == "__main__":
    main()
