"""The customer's photo as the providers get it: decoded within limits, upright, sRGB, without
metadata (a phone photo's EXIF can hold the home's GPS position), at most 2048 px on its long
side, as JPEG. Anything that is not a PNG, JPEG or WEBP image within the pixel limit is refused."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps

from render_assets.domain import untrusted_images
from render_assets.domain.imaging import fit_within, to_srgb
from render_assets.domain.untrusted_images import UnsafeImage
from render_assets.domain.url_policy import SourceImageRefused

MEDIA_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/pjpeg", "image/webp"})
# A 200 MP phone photo is 200 MP; beyond 50 MP a file is far more likely a decompression bomb.
MAX_PIXELS = 50_000_000
# Image models read their input at a few megapixels at most; more only costs upload time.
MAX_SIDE = 2048
JPEG_QUALITY = 92


@dataclass(frozen=True)
class SourcePhoto:
    data: bytes  # JPEG
    width: int
    height: int
    source_format: str  # what the customer uploaded: PNG, JPEG or WEBP
    source_size: tuple[int, int]
    # The bytes as fetched: where a render keeps part of the photo, it keeps the photo's own pixels.
    original: bytes = field(default=b"", repr=False)

    media_type = "image/jpeg"


def media_type_problem(content_type: str | None) -> str | None:
    """Why a Content-Type header is not an image type we read, or None."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in MEDIA_TYPES:
        return None
    return "is not an image (its Content-Type is not PNG, JPEG or WEBP)"


def prepare(data: bytes, field: str, *, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE) -> SourcePhoto:
    """The photo re-encoded for the providers; SourceImageRefused when it is not a usable image."""
    try:
        with untrusted_images.opened(data, max_pixels=max_pixels) as image:
            source_format, source_size = str(image.format), image.size
            scale = min(1.0, max_side / max(image.size))
            # JPEG: decode at a reduced scale (1/2, 1/4, 1/8), never below the size we keep.
            image.draft(None, (round(image.width * scale), round(image.height * scale)))
            image.load()
    except UnsafeImage as problem:
        raise SourceImageRefused(field, str(problem)) from None
    photo = to_srgb(fit_within(_upright(image), max_side))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return SourcePhoto(buffer.getvalue(), photo.width, photo.height, source_format, source_size, original=data)


def upright(data: bytes, field: str, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The whole photo as the customer sees it (upright, sRGB), at its own size: what a render
    with a mask puts back around the marked area."""
    try:
        with untrusted_images.opened(data, max_pixels=max_pixels) as image:
            image.load()
    except UnsafeImage as problem:
        raise SourceImageRefused(field, str(problem)) from None
    return to_srgb(_upright(image)).convert("RGB")


def _upright(image: Image.Image) -> Image.Image:
    """Upright, opaque, with its colour profile alone kept for `to_srgb`."""
    ImageOps.exif_transpose(image, in_place=True)  # phones store the orientation in EXIF
    profile: dict[str | tuple[int, int], Any] = {}
    if image.info.get("icc_profile"):
        profile["icc_profile"] = image.info["icc_profile"]
    photo: Image.Image = image
    if photo.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # Transparent areas as white, not as the black that dropping alpha would leave.
        backdrop = Image.new("RGBA", photo.size, (255, 255, 255, 255))
        backdrop.alpha_composite(photo.convert("RGBA"))
        photo = backdrop
    if photo.mode not in ("RGB", "L", "CMYK"):
        photo = photo.convert("RGB")
    photo.info = profile  # to_srgb applies the source's colour profile, then drops all metadata
    return photo
