"""A data version: a content digest of a declared source, computed without fetching
anything twice. For an S3 prefix it is a digest of the listing (each key, ETag and
size; nothing is downloaded); for a folder, of each file's path, SHA-256 and size.
The same content gives the same version however it is listed; one changed object
gives another. Which sources may be read is the operator's: a bucket on
CT_DATA_BUCKETS, a folder under CT_DATA_DIRS (a ct.yaml may come from a push)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ct_service import run_tags
from ct_service.data_spec import DataSpec, SourceKind
from ct_service.exceptions import DataError
from ct_service.object_store import Listing, ObjectStore, StoredObject
from ct_service.settings import Settings

SHORT = 12  # hex digits of a version shown to people


@dataclass(frozen=True)
class DataVersion:
    source: str  # s3://bucket/prefix or the folder
    param: str  # the MLproject parameter that gets its local folder
    digest: str  # 64 hex digits
    objects: int = 0
    size: int = 0  # bytes
    requests: int = 0  # listing requests it took (S3)

    @property
    def short(self) -> str:
        return self.digest[:SHORT]

    def describe(self) -> str:
        return f"{self.short} of {self.source} ({self.objects} objects, {self.size:,} bytes)"

    def to_tags(self) -> dict[str, str]:
        return {
            run_tags.DATA_SOURCE: self.source,
            run_tags.DATA_PARAM: self.param,
            run_tags.DATA_VERSION: self.digest,
            run_tags.DATA_OBJECTS: f"{self.objects} {self.size}",
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> DataVersion | None:
        """The version a run's tags record; None when it records none."""
        digest = tags.get(run_tags.DATA_VERSION, "")
        if not digest:
            return None
        objects, _, size = tags.get(run_tags.DATA_OBJECTS, "0 0").partition(" ")
        return cls(
            tags.get(run_tags.DATA_SOURCE, ""),
            tags.get(run_tags.DATA_PARAM, ""),
            digest,
            int(objects) if objects.isdigit() else 0,
            int(size) if size.isdigit() else 0,
        )


def digest_of(entries: Iterable[tuple[str, str, int]]) -> str:
    """The digest of (relative path, content id, size) entries, in path order."""
    digest = hashlib.sha256()
    for path, content, size in sorted(entries):
        digest.update(f"{path}\0{content}\0{size}\n".encode())
    return digest.hexdigest()


def version_of(settings: Settings, spec: DataSpec, store: ObjectStore | None = None) -> DataVersion:
    """The source's current version; DataError for a source the settings do not allow
    or that cannot be read, DataUnreachable for a store that does not answer."""
    if spec.kind is SourceKind.S3:
        return s3_version(settings, spec, store or ObjectStore(settings.data))[0]
    folder = allowed_folder(settings, spec.source)
    entries = list(_folder_entries(folder))
    return DataVersion(
        spec.source,
        spec.param,
        digest_of(entries),
        len(entries),
        sum(size for _, _, size in entries),
    )


def s3_version(
    settings: Settings, spec: DataSpec, store: ObjectStore
) -> tuple[DataVersion, Listing]:
    """The prefix's version and the listing it was computed from."""
    if spec.bucket not in settings.data.buckets:
        allowed = ", ".join(settings.data.buckets) or "none"
        raise DataError(
            f"{spec.source}: bucket {spec.bucket} is not on CT_DATA_BUCKETS (allowed: {allowed})"
        )
    listing = store.list(spec.bucket, spec.prefix)
    if not listing.objects:
        raise DataError(f"{spec.source}: no objects under this prefix")
    return _from_listing(spec, listing), listing


def _from_listing(spec: DataSpec, listing: Listing) -> DataVersion:
    objects: tuple[StoredObject, ...] = listing.objects
    return DataVersion(
        spec.source,
        spec.param,
        digest_of((o.key, o.etag, o.size) for o in objects),
        len(objects),
        sum(o.size for o in objects),
        listing.requests,
    )


def allowed_folder(settings: Settings, source: str) -> Path:
    """The folder, symlinks resolved, when it is under a data root (CT_DATA_DIRS)."""
    real = os.path.realpath(source)
    roots = settings.docker.data_dirs
    if not any(real == root or real.startswith(root + os.sep) for root in roots):
        shown = ", ".join(roots) or "none configured"
        raise DataError(f"{source}: not under a data root (CT_DATA_DIRS: {shown})")
    if not os.path.isdir(real):
        raise DataError(f"{source}: no such folder")
    return Path(real)


def _folder_entries(folder: Path) -> Iterable[tuple[str, str, int]]:
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            real = os.path.realpath(path)
            if not (real.startswith(str(folder) + os.sep) and os.path.isfile(real)):
                raise DataError(f"{path}: links outside the data folder or is not a plain file")
            digest = hashlib.sha256()
            with open(real, "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
            yield str(path.relative_to(folder)), digest.hexdigest(), os.path.getsize(real)
