"""The worker's local copy of a data version, handed to training as a read-only
folder. Objects are kept once each, by content (`objects/<md5 or etag digest>`), so
a new version fetches only the objects that changed; a version is a folder of hard
links to them (`versions/<digest>/<key>`), built aside and renamed into place, its
files and folders without write permission (and mounted read-only in Docker)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from ct_service.data_spec import DataSpec, SourceKind
from ct_service.data_version import DataVersion, allowed_folder, s3_version, version_of
from ct_service.exceptions import DataError
from ct_service.object_store import ObjectStore, StoredObject, is_md5
from ct_service.settings import Settings


def cache_root(settings: Settings) -> Path:
    return Path(settings.data.cache_dir or settings.home / "data").resolve()


def version_folder(settings: Settings, version: DataVersion) -> Path:
    """Where training finds this version: the folder itself for a folder source, the
    cache's version folder for S3 (known before it is fetched)."""
    if DataSpec(version.param, version.source).kind is SourceKind.FOLDER:
        return Path(os.path.realpath(version.source))
    return cache_root(settings) / "versions" / version.digest


def materialize(
    settings: Settings, pinned: DataVersion, store: ObjectStore | None = None
) -> tuple[Path, DataVersion, int]:
    """The local folder of the pinned version, the version it holds and how many
    objects were downloaded. A folder source is read in place (its current version
    is returned: it may have changed since it was pinned). An S3 version already in
    the cache is used as it is; else the prefix is listed, and fetched when it still
    holds the pinned version: DataError when it has changed since (S3 keeps no old
    versions; a pipeline for the new one follows from the data trigger)."""
    spec = DataSpec(pinned.param, pinned.source)
    if spec.kind is SourceKind.FOLDER:
        allowed_folder(settings, spec.source)
        return version_folder(settings, pinned), version_of(settings, spec), 0
    folder = version_folder(settings, pinned)
    if folder.is_dir():
        return folder, pinned, 0
    store = store or ObjectStore(settings.data)
    current, listing = s3_version(settings, spec, store)
    if current.digest != pinned.digest:
        raise DataError(
            f"{spec.source} changed since the pipeline pinned version {pinned.short}: it "
            f"holds {current.short} now, which a data-triggered pipeline trains on"
        )
    objects = cache_root(settings) / "objects"
    objects.mkdir(parents=True, exist_ok=True)
    fetched = 0
    for stored in listing.objects:
        blob = objects / blob_name(stored)
        if not blob.is_file():
            _fetch(store, spec, stored, blob)
            fetched += 1
    _build(folder, [(s.key, objects / blob_name(s)) for s in listing.objects])
    return folder, current, fetched


def blob_name(stored: StoredObject) -> str:
    """An object's name in the cache: its MD5 when its ETag is one (single-part
    uploads), else a digest of its ETag and size (multipart ETags name their parts)."""
    if is_md5(stored.etag):
        return f"md5-{stored.etag.lower()}"
    return "etag-" + hashlib.sha256(f"{stored.etag}\0{stored.size}".encode()).hexdigest()


def _fetch(store: ObjectStore, spec: DataSpec, stored: StoredObject, blob: Path) -> None:
    handle, temporary = tempfile.mkstemp(dir=blob.parent, prefix=".part-")
    os.close(handle)
    try:
        store.download(spec.bucket, spec.prefix, stored, Path(temporary))
        os.chmod(temporary, 0o444)
        os.replace(temporary, blob)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _build(folder: Path, files: list[tuple[str, Path]]) -> None:
    """The version's folder of hard links, built aside, read-only, renamed into place
    (a worker that dies half-way leaves only a `.build-` folder, removed next time)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f".build-{folder.name}-*"):
        _remove(stale)
    building = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".build-{folder.name}-"))
    try:
        for relative, blob in files:
            target = building / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(blob, target)
        for root, folders, _ in os.walk(building, topdown=False):
            for name in folders:
                os.chmod(Path(root) / name, 0o555)
        os.chmod(building, 0o555)
        try:
            os.rename(building, folder)
        except OSError:
            if not folder.is_dir():  # not another worker that built it first
                raise DataError(f"{folder}: the data version could not be put in place") from None
            _remove(building)
    except BaseException:
        _remove(building)
        raise


def _remove(path: Path) -> None:
    for root, folders, _ in os.walk(path):
        for name in folders:
            os.chmod(Path(root) / name, 0o755)
    if path.exists():
        os.chmod(path, 0o755)
    shutil.rmtree(path, ignore_errors=True)
