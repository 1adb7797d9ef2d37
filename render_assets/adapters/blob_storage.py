"""One storage interface for asset values and delivered images: a local folder or a GCS bucket.

`RENDER_STORAGE_URL` picks the backend: `file:///abs/path` (the embedded default) or
`gs://bucket/prefix`. Keys are relative, `/`-separated names built by the project itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, urlparse

if TYPE_CHECKING:
    from google.cloud.storage import Client as GcsClient

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*$")


def checked_key(key: str) -> str:
    """Refuse any key that could leave its prefix (`..`, absolute paths, odd characters)."""
    if not _SAFE_KEY.fullmatch(key) or any(part in {".", ".."} for part in key.split("/")):
        raise ValueError(f"unsafe storage key {key!r}")
    return key


@dataclass(frozen=True)
class StoredObject:
    key: str
    url: str
    size: int


class BlobStore(Protocol):
    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def url(self, key: str) -> str: ...


class LocalBlobStore:
    """Files under a root folder; writes are atomic (temp file + rename) so readers never see halves."""

    def __init__(self, root: Path, public_base_url: str | None = None) -> None:
        self.root = root
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None

    def _path(self, key: str) -> Path:
        return self.root / checked_key(key)

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return StoredObject(key=key, url=self.url(key), size=len(data))

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def url(self, key: str) -> str:
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(checked_key(key))}"
        return self._path(key).resolve().as_uri()


class GcsBlobStore:
    """Objects in a Google Cloud Storage bucket under a prefix, through google-cloud-storage."""

    def __init__(self, client: GcsClient, bucket: str, prefix: str = "", public_base_url: str | None = None):
        self.client = client
        self.bucket = client.bucket(bucket)
        self.prefix = prefix.strip("/")
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None

    def _name(self, key: str) -> str:
        key = checked_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        blob = self.bucket.blob(self._name(key))
        blob.cache_control = cache_control
        blob.metadata = dict(metadata) if metadata else None
        blob.upload_from_string(data, content_type=content_type)
        return StoredObject(key=key, url=self.url(key), size=len(data))

    def get(self, key: str) -> bytes:
        return bytes(self.bucket.blob(self._name(key)).download_as_bytes())

    def exists(self, key: str) -> bool:
        return bool(self.bucket.blob(self._name(key)).exists())

    def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self.bucket.blob(self._name(key)).delete()

    def url(self, key: str) -> str:
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(self._name(key))}"
        return str(self.bucket.blob(self._name(key)).public_url)


def open_blob_store(storage_url: str, *, public_base_url: str | None, gcs_client: Callable[[], GcsClient]) -> BlobStore:
    parsed = urlparse(storage_url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"RENDER_STORAGE_URL {storage_url!r}: a file URL needs an absolute path (file:///path)")
        return LocalBlobStore(Path(parsed.path), public_base_url)
    if parsed.scheme == "gs":
        if not parsed.netloc:
            raise ValueError(f"RENDER_STORAGE_URL {storage_url!r} names no bucket (expected gs://bucket/prefix)")
        return GcsBlobStore(gcs_client(), parsed.netloc, parsed.path, public_base_url)
    raise ValueError(f"RENDER_STORAGE_URL {storage_url!r}: expected file:///path or gs://bucket/prefix")
