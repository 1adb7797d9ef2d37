"""One storage interface for asset values and delivered images: a local folder or a GCS bucket.

`RENDER_STORAGE_URL` picks the backend: `file:///abs/path` (the embedded default) or
`gs://bucket/prefix`. Keys are relative, `/`-separated names built by the project itself.

Transient GCS failures (429, 5xx, dropped connections) are retried here, through the client
library's own retry (exponential backoff with full jitter, up to `RetrySettings.timeout_s`), so a
storage hiccup costs a pause, never a failed step that would re-run a paid provider call.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlparse

if TYPE_CHECKING:
    from google.cloud.storage import Client as GcsClient

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*$")
_TEMPORARY_PREFIX = ".tmp-"

DEFAULT_SIGNED_URL_TTL_S = 86_400
MAX_SIGNED_URL_TTL_S = 604_800  # the V4 signature's limit: seven days


def checked_key(key: str) -> str:
    """Refuse any key that could leave its prefix (`..`, absolute paths, odd characters)."""
    if not _SAFE_KEY.fullmatch(key) or any(part in {".", ".."} for part in key.split("/")):
        raise ValueError(f"unsafe storage key {key!r}")
    return key


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    # False when `if_absent` found the object already there and left it alone: not this write's to remove.
    created: bool = True


@dataclass(frozen=True)
class RetrySettings:
    """How long one storage request is retried: exponential backoff with full jitter."""

    timeout_s: float = 120.0  # total time budget of one request, retries included
    initial_delay_s: float = 1.0
    max_delay_s: float = 30.0


class BlobStore(Protocol):
    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
        if_absent: bool = False,
    ) -> StoredObject:
        """Write `data` under `key`. With `if_absent`, an existing object is kept as it is
        (content-addressed names: the same name holds the same bytes) and `created` is False."""
        ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove `key`; a key that is already gone is fine."""
        ...

    def keys_under(self, folder: str) -> list[str]:
        """Every key below `folder/`, sorted."""
        ...

    def url(self, key: str) -> str:
        """Where a client fetches `key`: the public base URL, the bucket's URL, or a signed URL."""
        ...


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
        if_absent: bool = False,
    ) -> StoredObject:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if if_absent and path.is_file():
            return StoredObject(key=key, size=len(data), created=False)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=_TEMPORARY_PREFIX)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            if if_absent:
                # link() refuses an existing target: of two concurrent writers, exactly one creates.
                try:
                    os.link(temporary, path)
                except FileExistsError:
                    return StoredObject(key=key, size=len(data), created=False)
                finally:
                    Path(temporary).unlink(missing_ok=True)
            else:
                os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return StoredObject(key=key, size=len(data))

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys_under(self, folder: str) -> list[str]:
        base = self._path(folder)
        if not base.is_dir():
            return []
        return sorted(
            f"{folder}/{path.relative_to(base).as_posix()}"
            for path in base.rglob("*")
            if path.is_file() and not path.name.startswith(_TEMPORARY_PREFIX)
        )

    def url(self, key: str) -> str:
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(checked_key(key))}"
        return self._path(key).resolve().as_uri()


class GcsBlobStore:
    """Objects in a Google Cloud Storage bucket under a prefix, through google-cloud-storage.

    `private`: the bucket is not publicly readable, so `url` returns V4 signed URLs valid for
    `signed_url_ttl_s`, signed with `signing_credentials` or the client's own credentials.
    """

    def __init__(
        self,
        client: GcsClient,
        bucket: str,
        prefix: str = "",
        public_base_url: str | None = None,
        *,
        private: bool = False,
        signed_url_ttl_s: int = DEFAULT_SIGNED_URL_TTL_S,
        signing_credentials: Any = None,
        retry: RetrySettings = RetrySettings(),
        request_timeout_s: float = 60.0,
    ) -> None:
        from google.cloud.storage.retry import DEFAULT_RETRY

        check_url_options(public_base_url, private, signed_url_ttl_s)
        self.client = client
        self.bucket = client.bucket(bucket)
        self.prefix = prefix.strip("/")
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.private = private
        self.signed_url_ttl = timedelta(seconds=signed_url_ttl_s)
        self.signing_credentials = signing_credentials
        # The library's retry predicate (429, 408, 5xx, connection errors); only the pacing is ours.
        self.retry = DEFAULT_RETRY.with_delay(
            initial=retry.initial_delay_s, maximum=retry.max_delay_s, multiplier=2.0
        ).with_timeout(retry.timeout_s)
        self.request_timeout_s = request_timeout_s

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
        if_absent: bool = False,
    ) -> StoredObject:
        from google.api_core.exceptions import PreconditionFailed

        blob = self.bucket.blob(self._name(key))
        blob.cache_control = cache_control
        blob.metadata = dict(metadata) if metadata else None
        if not if_absent:
            blob.upload_from_string(data, content_type=content_type, retry=self.retry, timeout=self.request_timeout_s)
            return StoredObject(key=key, size=len(data))
        # Checked first because the emulator ignores preconditions, and present bytes need no second upload.
        if blob.exists(retry=self.retry, timeout=self.request_timeout_s):
            return StoredObject(key=key, size=len(data), created=False)
        try:
            # Generation 0 = "create only": a retried upload can never replace another writer's object.
            blob.upload_from_string(
                data,
                content_type=content_type,
                if_generation_match=0,
                retry=self.retry,
                timeout=self.request_timeout_s,
            )
        except PreconditionFailed:
            return StoredObject(key=key, size=len(data), created=False)
        return StoredObject(key=key, size=len(data))

    def get(self, key: str) -> bytes:
        blob = self.bucket.blob(self._name(key))
        return bytes(blob.download_as_bytes(retry=self.retry, timeout=self.request_timeout_s))

    def exists(self, key: str) -> bool:
        return bool(self.bucket.blob(self._name(key)).exists(retry=self.retry, timeout=self.request_timeout_s))

    def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        # A retried delete whose first try succeeded answers 404: the object is gone either way.
        with contextlib.suppress(NotFound):
            self.bucket.blob(self._name(key)).delete(retry=self.retry, timeout=self.request_timeout_s)

    def keys_under(self, folder: str) -> list[str]:
        name_prefix = self._name(folder) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        blobs = self.client.list_blobs(
            self.bucket, prefix=name_prefix, retry=self.retry, timeout=self.request_timeout_s
        )
        return sorted(blob.name[strip:] for blob in blobs)

    def url(self, key: str) -> str:
        name = self._name(key)
        if self.private:
            return self._signed_url(name)
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(name)}"
        return str(self.bucket.blob(name).public_url)

    def _signed_url(self, name: str) -> str:
        from google.auth.credentials import Signing

        blob = self.bucket.blob(name)
        credentials = self.signing_credentials or self.client._credentials
        if isinstance(credentials, Signing):  # a service-account key: signed locally
            return str(
                blob.generate_signed_url(
                    version="v4", expiration=self.signed_url_ttl, method="GET", credentials=credentials
                )
            )
        if hasattr(credentials, "service_account_email"):
            # Workload identity / metadata-server credentials hold no key: IAM signBlob signs for them.
            import google.auth.transport.requests

            if not credentials.valid:
                credentials.refresh(google.auth.transport.requests.Request())
            return str(
                blob.generate_signed_url(
                    version="v4",
                    expiration=self.signed_url_ttl,
                    method="GET",
                    service_account_email=credentials.service_account_email,
                    access_token=credentials.token,
                )
            )
        raise ValueError(
            "RENDER_STORAGE_PRIVATE=true needs credentials that can sign URLs (a service-account key, "
            f"or a service-account identity such as workload identity); {type(credentials).__name__} cannot"
        )


def check_url_options(public_base_url: str | None, private: bool, signed_url_ttl_s: int) -> None:
    """Refuse URL settings that contradict each other (also checked when the code location loads)."""
    if private and public_base_url:
        raise ValueError(
            "CDN_BASE_URL and RENDER_STORAGE_PRIVATE=true exclude each other: a private bucket is read "
            "through signed URLs, not through a public CDN"
        )
    if not 1 <= signed_url_ttl_s <= MAX_SIGNED_URL_TTL_S:
        raise ValueError(f"RENDER_SIGNED_URL_TTL_S must be between 1 and {MAX_SIGNED_URL_TTL_S} seconds")


def open_blob_store(
    storage_url: str,
    *,
    public_base_url: str | None,
    gcs_client: Callable[[], GcsClient],
    files_base_url: str | None = None,
    private: bool = False,
    signed_url_ttl_s: int = DEFAULT_SIGNED_URL_TTL_S,
    retry: RetrySettings = RetrySettings(),
) -> BlobStore:
    """The store `storage_url` names. URLs of local files use `public_base_url` (a CDN) when set,
    else `files_base_url` (where the progress server serves the folder), else `file://` URIs."""
    parsed = urlparse(storage_url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"RENDER_STORAGE_URL {storage_url!r}: a file URL needs an absolute path (file:///path)")
        if private:
            raise ValueError("RENDER_STORAGE_PRIVATE=true applies to gs:// storage; local files are served as they are")
        return LocalBlobStore(Path(parsed.path), public_base_url or files_base_url)
    if parsed.scheme == "gs":
        if not parsed.netloc:
            raise ValueError(f"RENDER_STORAGE_URL {storage_url!r} names no bucket (expected gs://bucket/prefix)")
        check_url_options(public_base_url, private, signed_url_ttl_s)
        return GcsBlobStore(
            gcs_client(),
            parsed.netloc,
            parsed.path,
            public_base_url,
            private=private,
            signed_url_ttl_s=signed_url_ttl_s,
            retry=retry,
        )
    raise ValueError(f"RENDER_STORAGE_URL {storage_url!r}: expected file:///path or gs://bucket/prefix")
