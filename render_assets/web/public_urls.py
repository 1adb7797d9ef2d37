"""Image URLs as a browser can load them: local storage (`file://`) is served by this server at
`/files`, so URLs under its root are rewritten to point there; other URLs (CDN, GCS) pass as they are."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

FILES_MOUNT = "/files"
_URL_FIELDS = ("imageUrl", "thumbnailUrl")


def local_storage_root(storage_url: str | None) -> Path | None:
    if not storage_url or urlparse(storage_url).scheme != "file":
        return None
    return Path(urlparse(storage_url).path).resolve()


class PublicUrls:
    def __init__(self, storage_root: Path | None) -> None:
        self._file_prefix = storage_root.as_uri().rstrip("/") + "/" if storage_root is not None else None

    def url(self, url: str | None) -> str | None:
        if url and self._file_prefix and url.startswith(self._file_prefix):
            return f"{FILES_MOUNT}/{url[len(self._file_prefix) :]}"
        return url

    def rewrite(self, data: dict[str, Any]) -> dict[str, Any]:
        """A copy of event or status data with its image URLs (top level and `result`) rewritten."""
        out = dict(data)
        for field in _URL_FIELDS:
            if isinstance(out.get(field), str):
                out[field] = self.url(out[field])
        if isinstance(out.get("result"), dict):
            out["result"] = self.rewrite(out["result"])
        return out
