"""Data as a declared, versioned input (docs/data.md): the version of a folder and of
an S3 prefix (a real SeaweedFS server), the worker's read-only cache that fetches only
what changed, and bad input refused with the file, key or URL named."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, ct_env
from seaweed import STRANGER_KEYS, S3Server

from ct_service.data_cache import materialize, version_folder
from ct_service.data_spec import DataSpec
from ct_service.data_version import version_of
from ct_service.exceptions import DataError, DataUnreachable
from ct_service.object_store import ObjectStore
from ct_service.project import load_project
from ct_service.settings import DataSettings, DockerSettings, Settings


def new_bucket(s3: S3Server) -> str:
    name = f"data-{uuid.uuid4().hex[:10]}"
    s3.client().create_bucket(Bucket=name)
    return name


def s3_settings(tmp_path: Path, s3: S3Server, *buckets: str, keys=None) -> Settings:
    access, secret = keys or (
        s3.environment("")["CT_DATA_S3_ACCESS_KEY_ID"],
        s3.environment("")["CT_DATA_S3_SECRET_ACCESS_KEY"],
    )
    return Settings(
        home=tmp_path / "ct",
        data=DataSettings(
            s3_endpoint=s3.url,
            s3_access_key_id=access,
            s3_secret_access_key=secret,
            buckets=buckets,
        ),
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"param": "data", "source": "s3://bucket/mnist/"}, ""),
        ({"param": "data", "source": "/srv/data/mnist"}, ""),
        (
            {"param": "images", "source": "s3://bucket/x/"},
            "data.param names 'images', not a parameter",
        ),
        ({"param": "data"}, "data.source must be"),
        (
            {"param": "data", "source": "relative/folder"},
            "must be s3://bucket/prefix/ or an absolute folder",
        ),
        ({"param": "data", "source": "s3:///nobucket"}, "is not an S3 URL"),
        ({"param": "data", "source": "s3://b/", "cache": 1}, "unknown key(s) cache"),
        ("s3://bucket/", "data must be a mapping"),
    ],
)
def test_the_data_block_is_checked(spec: object, error: str) -> None:
    if not error:
        assert DataSpec.from_spec(spec, {"data", "epochs"}).param == "data"
        return
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        DataSpec.from_spec(spec, {"data", "epochs"})


@pytest.mark.integration
def test_a_folder_version_is_stable_and_changes_with_one_file(tmp_path: Path) -> None:
    root = tmp_path / "roots"
    folder = root / "mnist"
    (folder / "sub").mkdir(parents=True)
    for i in range(5):
        (folder / f"part-{i}.bin").write_bytes(os.urandom(1000))
    (folder / "sub" / "labels.txt").write_text("1 2 3")
    settings = Settings(
        home=tmp_path / "ct", docker=DockerSettings(data_dirs=(str(root.resolve()),))
    )
    spec = DataSpec("data", str(folder))
    first, again = version_of(settings, spec), version_of(settings, spec)
    assert first == again and first.objects == 6 and len(first.digest) == 64
    (folder / "sub" / "labels.txt").write_text("1 2 4")
    changed = version_of(settings, spec)
    assert changed.digest != first.digest and changed.objects == 6
    assert version_folder(settings, changed) == folder.resolve()  # read in place


@pytest.mark.integration
def test_a_folder_outside_the_data_roots_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    settings = Settings(
        home=tmp_path / "ct", docker=DockerSettings(data_dirs=(str(tmp_path / "roots"),))
    )
    with pytest.raises(DataError, match=r"elsewhere: not under a data root \(CT_DATA_DIRS"):
        version_of(settings, DataSpec("data", str(tmp_path / "elsewhere")))


@pytest.mark.integration
def test_an_s3_version_is_stable_paginates_and_changes_with_one_object(
    tmp_path: Path, s3: S3Server
) -> None:
    bucket = new_bucket(s3)
    files = {f"mnist/part-{i:05d}.bin": i.to_bytes(4, "big") * 8 for i in range(1005)}
    s3.upload(bucket, files)
    s3.upload(bucket, {"other/unrelated.bin": b"not in the prefix"})
    settings = s3_settings(tmp_path, s3, bucket)
    spec = DataSpec("data", f"s3://{bucket}/mnist/")
    first, again = version_of(settings, spec), version_of(settings, spec)
    assert first.digest == again.digest
    assert first.objects == 1005 and first.size == 1005 * 32
    assert first.requests == 2  # S3 lists at most 1,000 keys a request: one page more
    s3.upload(bucket, {"mnist/part-00500.bin": b"changed"})
    changed = version_of(settings, spec)
    assert changed.digest != first.digest and changed.objects == 1005


@pytest.mark.integration
def test_the_cache_fetches_only_changed_objects_into_a_read_only_folder(
    tmp_path: Path, s3: S3Server
) -> None:
    bucket = new_bucket(s3)
    s3.upload(bucket, {f"v/{name}": name.encode() * 100 for name in ("a", "b", "c", "d/e")})
    settings = s3_settings(tmp_path, s3, bucket)
    spec = DataSpec("data", f"s3://{bucket}/v/")
    first = version_of(settings, spec)
    folder, got, fetched = materialize(settings, first)
    assert (got.digest, fetched) == (first.digest, 4)
    assert (
        folder == version_folder(settings, first)
        and (folder / "d" / "e").read_bytes() == b"d/e" * 100
    )
    assert not os.stat(folder).st_mode & 0o222 and not os.stat(folder / "a").st_mode & 0o222
    assert materialize(settings, first)[2] == 0  # the same version: nothing fetched
    s3.upload(bucket, {"v/b": b"new b"})
    second = version_of(settings, spec)
    folder2, _, fetched2 = materialize(settings, second)
    assert fetched2 == 1 and folder2 != folder  # only b: a, c and d/e came from the cache
    assert (folder2 / "b").read_bytes() == b"new b" and (folder / "b").read_bytes() == b"b" * 100


@pytest.mark.integration
def test_a_version_gone_from_the_store_is_refused_naming_both(tmp_path: Path, s3: S3Server) -> None:
    bucket = new_bucket(s3)
    s3.upload(bucket, {"v/a": b"1"})
    settings = s3_settings(tmp_path, s3, bucket)
    pinned = version_of(settings, DataSpec("data", f"s3://{bucket}/v/"))
    s3.upload(bucket, {"v/a": b"2"})
    with pytest.raises(
        DataError, match=f"changed since the pipeline pinned version {pinned.short}"
    ):
        materialize(settings, pinned)


@pytest.mark.integration
def test_store_errors_name_the_url(tmp_path: Path, s3: S3Server) -> None:
    bucket = new_bucket(s3)
    s3.upload(bucket, {"v/a": b"1"})
    url = f"s3://{bucket}/v/"
    with pytest.raises(DataError, match=f"bucket {bucket} is not on CT_DATA_BUCKETS"):
        version_of(s3_settings(tmp_path, s3, "another"), DataSpec("data", url))
    with pytest.raises(
        DataError, match=f"{url}: the store refuses the service's keys \\(AccessDenied\\)"
    ):
        version_of(s3_settings(tmp_path, s3, bucket, keys=STRANGER_KEYS), DataSpec("data", url))
    with pytest.raises(DataError, match="s3://no-such-bucket/v/: no such bucket"):
        version_of(
            s3_settings(tmp_path, s3, "no-such-bucket"), DataSpec("data", "s3://no-such-bucket/v/")
        )
    with pytest.raises(DataError, match=f"s3://{bucket}/empty/: no objects"):
        version_of(s3_settings(tmp_path, s3, bucket), DataSpec("data", f"s3://{bucket}/empty/"))
    closed = Settings(
        home=tmp_path / "ct",
        data=DataSettings(
            s3_endpoint="http://127.0.0.1:9",
            s3_access_key_id="a",
            s3_secret_access_key="b",
            buckets=(bucket,),
        ),
    )
    with pytest.raises(DataUnreachable, match=f"{url}: cannot reach the data store"):
        ObjectStore(closed.data).list(bucket, "v/")


def lenet_with(tmp_path: Path, data_block: str) -> Path:
    import shutil

    copy = tmp_path / "lenet"
    shutil.copytree(ROOT / "projects" / "lenet", copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "ct.yaml", "a") as declared:
        declared.write(data_block)
    return copy


@pytest.mark.integration
def test_a_data_block_naming_an_unknown_parameter_names_the_file(tmp_path: Path) -> None:
    project = lenet_with(tmp_path, "data: {param: images, source: s3://b/mnist/}\n")
    with pytest.raises(Exception, match=f"{project / 'ct.yaml'}: data.param names 'images'"):
        load_project(project)


@pytest.mark.integration
def test_run_with_an_unreachable_store_starts_nothing(tmp_path: Path) -> None:
    project = lenet_with(tmp_path, "data: {param: data, source: s3://mnist/v1/}\n")
    env = ct_env(
        CT_HOME=str(tmp_path / "ct"),
        CT_DATA_S3_ENDPOINT="http://127.0.0.1:9",
        CT_DATA_S3_ACCESS_KEY_ID="a",
        CT_DATA_S3_SECRET_ACCESS_KEY="b",
        CT_DATA_BUCKETS="mnist",
    )
    done = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "run", str(project)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "s3://mnist/v1/: cannot reach the data store" in done.stderr
    status = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "status", "--json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert '"pipeline_id"' not in status.stdout  # nothing half-recorded
