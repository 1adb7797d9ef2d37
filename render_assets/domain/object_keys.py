"""Where delivered objects live and how they are served: content-addressed names scoped by
organization, project and render, immutable once written."""

from __future__ import annotations

import hashlib
import re

from render_assets.domain import imaging

# A name is derived from its content, so it never changes meaning: caches may keep it for a year.
IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"
DIGEST_CHARS = 16  # 64 bits of SHA-256: collisions within one render's folder are not a concern
DELIVERED_ROOT = "renders"

# Ids as the payload allows them (ASCII letters, digits, '-' and '_'): no '/', '.', '%', NUL or
# look-alike letters can reach a name. Use with fullmatch (`$` would let a trailing newline by).
SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_VARIANT = re.compile(r"[a-z]{1,16}")
MEDIA_TYPES_BY_EXTENSION = {
    extension: imaging.MEDIA_TYPES[image_format] for image_format, extension in imaging.EXTENSIONS.items()
}


def render_folder(organization_id: str, project_id: str, render_id: str) -> str:
    """`renders/<organizationId>/<projectId>/<renderId>`; ids that could leave it are refused.

    The payload validates the ids already; this guard keeps the key builder safe on its own.
    """
    for label, value in (("organizationId", organization_id), ("projectId", project_id), ("renderId", render_id)):
        if not SAFE_ID.fullmatch(value):
            raise ValueError(f"{label} is not a safe object-name segment (letters, digits, - and _, 1-64 chars)")
    return f"{DELIVERED_ROOT}/{organization_id}/{project_id}/{render_id}"


def object_key(
    organization_id: str, project_id: str, render_id: str, *, content: bytes, variant: str, extension: str
) -> str:
    """`renders/<org>/<project>/<render>/<sha256 prefix>-<variant>.<ext>`: the same bytes always get
    the same name, and different bytes (a re-render) a new one."""
    folder = render_folder(organization_id, project_id, render_id)
    if not _VARIANT.fullmatch(variant):
        raise ValueError(f"variant {variant!r} is not a lower-case word")
    if extension not in MEDIA_TYPES_BY_EXTENSION:
        raise ValueError(f"extension {extension!r} is not a delivered image type")
    digest = hashlib.sha256(content).hexdigest()[:DIGEST_CHARS]
    return f"{folder}/{digest}-{variant}.{extension}"


_NAME = re.compile(rf"/[0-9a-f]{{{DIGEST_CHARS}}}-(?P<variant>[a-z]{{1,16}})\.[a-z]+$")


def variant_of(key: str) -> str | None:
    """The variant an object key names (`master`, `web`, ...), or None for another kind of key."""
    match = _NAME.search(key)
    return match["variant"] if match else None
