"""What the fake image APIs read from an edit request (the photo, the mask), and how they answer
one: each API's own mask convention, and a configurable behaviour, so a test can tell a provider
route that keeps the unmarked area from one that does not.

- `respect` (the default): the edit repaints only the marked area; elsewhere the reply shows the
  photo, resized to the output.
- `ignore`: the whole picture is repainted, as a model that disregards the mask would.

The fakes never dilate a mask (Imagen's `dilation` is recorded, not applied)."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np
from PIL import Image

MASK_BEHAVIOURS = ("respect", "ignore")


def decode(data: bytes | str | None) -> Image.Image | None:
    """An image from raw bytes or base64 text; None when there is none or it does not decode."""
    if data is None:
        return None
    try:
        raw = base64.b64decode(data, validate=True) if isinstance(data, str) else data
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (OSError, ValueError, SyntaxError, binascii.Error):
        return None
    return image


def describe(image: Image.Image | None) -> dict[str, Any]:
    """What a test asserts about an input image."""
    if image is None:
        return {"decodes": False}
    return {
        "decodes": True,
        "format": image.format,
        "mode": image.mode,
        "size": image.size,
        "alpha": image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info,
    }


def marked_by_alpha(mask: Image.Image) -> Image.Image:
    """OpenAI: the mask's fully transparent pixels are the area to edit."""
    alpha = np.asarray(mask.convert("RGBA").getchannel("A"))
    return Image.fromarray(((alpha == 0) * 255).astype(np.uint8), "L")


def marked_by_value(mask: Image.Image, threshold: int = 1) -> Image.Image:
    """Imagen: non-zero mask values mark the area to edit (threshold 1); Gemini reads white."""
    values = np.asarray(mask.convert("L"))
    return Image.fromarray(((values >= threshold) * 255).astype(np.uint8), "L")


def marked_share(marked: Image.Image) -> float:
    return float(np.asarray(marked).mean() / 255)


def edited(picture: Image.Image, photo: Image.Image | None, marked: Image.Image | None, behaviour: str) -> Image.Image:
    """The reply to an edit: `picture` (the fake's own drawing) inside the marked area, the photo
    outside it, both at the picture's size; the whole picture when the mask is ignored or absent."""
    if photo is None or marked is None or behaviour == "ignore":
        return picture
    size = picture.size
    base = photo.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    return Image.composite(picture, base, marked.resize(size, Image.Resampling.NEAREST))
