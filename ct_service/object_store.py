"""The S3-compatible store declared data lives in, read with the service's own keys
(CT_DATA_S3_*): listing a prefix (paginated) and fetching one object. Training never
holds these keys: the worker fetches, training reads a local folder (data_cache.py).

Errors name the URL: keys the store refuses and a missing bucket are DataError (a
retry cannot fix them); a store that does not answer is DataUnreachable (retried)."""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ct_service.data_spec import S3_SCHEME
from ct_service.exceptions import DataError, DataUnreachable
from ct_service.settings import DataSettings

REFUSED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
MISSING = {"NoSuchBucket", "NoSuchKey", "404"}
PAGE = 1000  # keys per listing request: S3's most


@dataclass(frozen=True)
class StoredObject:
    key: str  # relative to the listed prefix
    etag: str  # without quotes
    size: int


@dataclass(frozen=True)
class Listing:
    objects: tuple[StoredObject, ...]
    requests: int  # listing requests it took (one per PAGE keys)


class ObjectStore:
    def __init__(self, settings: DataSettings):
        self.settings = settings
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # only workers and the webhook that read S3 data need it
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self.settings.s3_endpoint or None,
                region_name=self.settings.s3_region,
                aws_access_key_id=self.settings.s3_access_key_id or None,
                aws_secret_access_key=self.settings.s3_secret_access_key or None,
                config=Config(
                    connect_timeout=5,
                    read_timeout=60,
                    retries={"max_attempts": 3, "mode": "standard"},
                    s3={"addressing_style": "path"},
                ),
            )
        return self._client

    def list(self, bucket: str, prefix: str) -> Listing:
        """Every object under the prefix (keys that end in "/" are folder markers, left
        out), one request per PAGE keys."""
        found: list[StoredObject] = []
        requests = 0
        url = f"{S3_SCHEME}{bucket}/{prefix}"
        with _translated(url):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": PAGE}
            )
            for page in pages:
                requests += 1
                for entry in page.get("Contents", ()):
                    key = entry["Key"]
                    if key.endswith("/"):
                        continue
                    relative = safe_relative(key[len(prefix) :].lstrip("/"), url)
                    found.append(StoredObject(relative, entry["ETag"].strip('"'), entry["Size"]))
        return Listing(tuple(sorted(found, key=lambda o: o.key)), requests)

    def download(self, bucket: str, prefix: str, stored: StoredObject, into: Path) -> None:
        """Fetch one object into `into`; its MD5 is checked against a single-part ETag."""
        key = posixpath.join(prefix, stored.key) if prefix else stored.key
        with _translated(f"{S3_SCHEME}{bucket}/{key}"):
            self.client.download_file(bucket, key, str(into))
        if is_md5(stored.etag):
            digest = hashlib.md5(usedforsecurity=False)
            with open(into, "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != stored.etag:
                into.unlink(missing_ok=True)
                raise DataUnreachable(
                    f"{S3_SCHEME}{bucket}/{key} changed while it was fetched (its MD5 is not "
                    f"its ETag {stored.etag}); fetched again on the next try"
                )


def is_md5(etag: str) -> bool:
    return len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower())


def safe_relative(key: str, where: str) -> str:
    """A key as a relative path that stays inside its folder; DataError otherwise."""
    normal = posixpath.normpath(key)
    if not key or posixpath.isabs(key) or normal == ".." or normal.startswith("../"):
        raise DataError(f"{where}: the key {key!r} would leave the data folder; rename it")
    return normal


@contextmanager
def _translated(url: str) -> Iterator[None]:
    """botocore's errors as the service's, naming the URL."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        yield
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in REFUSED:
            raise DataError(
                f"{url}: the store refuses the service's keys ({code}); "
                "check CT_DATA_S3_ACCESS_KEY_ID and the bucket's permissions"
            ) from None
        if code in MISSING:
            raise DataError(f"{url}: no such bucket or key ({code})") from None
        raise DataUnreachable(f"{url}: the store answered {code}") from None
    except NoCredentialsError:
        raise DataError(
            f"{url}: no S3 keys; set CT_DATA_S3_ACCESS_KEY_ID and "
            "CT_DATA_S3_SECRET_ACCESS_KEY(_FILE)"
        ) from None
    except BotoCoreError as error:  # no connection, a timeout
        raise DataUnreachable(f"{url}: cannot reach the data store: {error}") from None
