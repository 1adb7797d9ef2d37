"""Image bytes from a provider reply, decoded safely (a malformed reply is the provider's fault).

A reply is refused, as `malformed` (transient, may have billed), unless it is one still PNG,
JPEG or WebP image of the type the reply declares (or we asked for), within these limits:

- `MAX_ENCODED_CHARS` of base64 (checked before decoding it) or `MAX_IMAGE_BYTES` (64 MiB) of
  file: a 4096x4096 RGB PNG of pure noise is 50 MiB, a real render far less. The HTTP layer
  reads at most `reply_size.MAX_REPLY_BYTES` of body before this (see `reply_size.py`).
- `MAX_PIXELS` (40 MP, 2.4x the largest native output) and `MAX_METADATA_BYTES` (8 MiB),
  checked by `domain/untrusted_images.py` before any pixel is decoded (and before Pillow sees
  the bytes where it would pay first); truncated files fail.
- one frame: animated PNG/WebP and multi-picture JPEG are refused.

So one decode holds at most the encoded text (85 MiB), the file (64 MiB), the pixels (40 MP x 4
bytes = 160 MB) and the RGB copy (120 MB). Measured peak RSS added (`make bench-poison`): at most
21 MiB to refuse any poisoned file, 0 for an oversize one, 308 MiB to decode the largest image
accepted (40 MP RGBA), 173 MiB for a 4096x4096 noise PNG. The whole provider call: see
docs/architecture.md (Providers)."""

from __future__ import annotations

import base64
import binascii
import math

from PIL import Image

from render_assets.domain import untrusted_images
from render_assets.domain.untrusted_images import FORMATS, MAX_METADATA_BYTES, MIB, UnsafeImage
from render_assets.providers.errors import malformed

# Larger than any native output we ask for (4K square is 16.8 MP; an upscaler gives at most 17 MP).
MAX_PIXELS = 40_000_000
MAX_IMAGE_BYTES = 64 * MIB
MAX_ENCODED_CHARS = 4 * math.ceil(MAX_IMAGE_BYTES / 3)
DECLARED = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/webp": "WEBP"}


def decode_image(provider: str, data: bytes | str, *, mime_type: str | None = None) -> Image.Image:
    """An RGB image from raw or base64 bytes; ProviderError(malformed) for anything else.
    `mime_type`: what the reply declares (or what we asked for); the image must be of that type."""
    expected = _expected_format(provider, mime_type)
    data = _file_bytes(provider, data)
    try:
        with untrusted_images.opened(data, max_pixels=MAX_PIXELS) as image:
            frames = getattr(image, "n_frames", 1)
            if frames > 1 or getattr(image, "is_animated", False):
                raise UnsafeImage(f"animated or multi-frame image ({frames} frames)")
            if expected is not None and image.format != expected:
                raise UnsafeImage(f"{FORMATS[expected]} declared, but the image is {image.format}")
            image.load()
            if untrusted_images.metadata_bytes(image) > MAX_METADATA_BYTES:
                raise UnsafeImage(f"image metadata exceeds {MAX_METADATA_BYTES // MIB} MiB")
            return image.convert("RGB")
    except UnsafeImage as problem:
        raise malformed(provider, str(problem)) from None


def _expected_format(provider: str, mime_type: str | None) -> str | None:
    if not mime_type:
        return None
    expected = DECLARED.get(mime_type.split(";", 1)[0].strip().lower())
    if expected is None:  # not echoed: it is the provider's text, of any length
        raise malformed(provider, "the declared type is not an image type we accept (PNG, JPEG, WebP)")
    return expected


def _file_bytes(provider: str, data: bytes | str) -> bytes:
    """The image file, refusing oversize data before decoding or copying it."""
    if isinstance(data, str):
        if len(data) > MAX_ENCODED_CHARS:
            raise malformed(provider, f"image of more than {MAX_IMAGE_BYTES // MIB} MiB")
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise malformed(provider, "image is not valid base64") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise malformed(provider, f"image of more than {MAX_IMAGE_BYTES // MIB} MiB")
    if not data:
        raise malformed(provider, "empty image")
    return data
