"""Delivered images of a local (`file://`) store over HTTP, so the embedded default gives URLs a
browser can load. The progress server mounts `files_app(root)` at `/files`.

Only delivered images are served: keys under `renders/` with an image extension, never the
asset values under `dagster/` (prompts are user data). Keys go through the storage layer's own
check, and the resolved path must stay under the root (no `..`, no symlink escape).
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from render_assets.adapters.blob_storage import checked_key
from render_assets.domain.object_keys import DELIVERED_ROOT, IMMUTABLE_CACHE_CONTROL, MEDIA_TYPES_BY_EXTENSION


def files_app(root: Path) -> Starlette:
    """An ASGI app serving `GET|HEAD /<key>` from the local store rooted at `root`."""
    resolved_root = root.resolve()

    async def serve(request: Request) -> Response:
        found = _delivered_file(resolved_root, request.path_params["key"])
        if found is None:
            return PlainTextResponse("not found", status_code=404)
        path, media_type = found
        return FileResponse(
            path,
            media_type=media_type,
            headers={"Cache-Control": IMMUTABLE_CACHE_CONTROL, "X-Content-Type-Options": "nosniff"},
        )

    return Starlette(routes=[Route("/{key:path}", serve, methods=["GET", "HEAD"])])


def _delivered_file(root: Path, key: str) -> tuple[Path, str] | None:
    """The file and media type a key names, or None when it is not a delivered image under `root`."""
    try:
        checked_key(key)
    except ValueError:
        return None
    media_type = MEDIA_TYPES_BY_EXTENSION.get(key.rsplit(".", 1)[-1]) if "." in key else None
    if media_type is None or not key.startswith(f"{DELIVERED_ROOT}/"):
        return None
    path = (root / key).resolve()
    if not path.is_relative_to(root / DELIVERED_ROOT) or not path.is_file():
        return None
    return path, media_type
