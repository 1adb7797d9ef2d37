"""What a delivered render consists of: the master, a web-sized WebP and a gallery thumbnail."""

from __future__ import annotations

from enum import StrEnum

from PIL import Image

from render_assets.domain import imaging
from render_assets.domain.imaging import EncodedImage


class Variant(StrEnum):
    MASTER = "master"  # the requested format at the requested resolution
    WEB = "web"  # WebP, long side at most 2048 px: what a page shows
    THUMBNAIL = "thumbnail"  # WebP, 300x300 cover crop: gallery tiles


# Slowest first, so a thread pool starts the longest encode at once.
VARIANTS: tuple[Variant, ...] = (Variant.MASTER, Variant.WEB, Variant.THUMBNAIL)


def encode_variant(srgb: Image.Image, variant: Variant, master_format: str) -> EncodedImage:
    """One variant of an image already in sRGB (`imaging.to_srgb`), with the sRGB profile embedded.

    Pillow releases the GIL while it resizes and encodes, so variants encode in parallel threads;
    each thread saves an Image object of its own.
    """
    profile = imaging.srgb_profile()
    if variant is Variant.MASTER:
        return imaging.encode(srgb, master_format, icc_profile=profile)
    if variant is Variant.WEB:
        web = imaging.fit_within(srgb)
        # Pillow's save() keeps its settings on the Image object, so threads must never save the
        # same one: a small image (not resized) would be saved as the master at the same time.
        return imaging.encode(web if web is not srgb else srgb.copy(), "WEBP", icc_profile=profile)
    return imaging.encode(imaging.thumbnail(srgb), "WEBP", icc_profile=profile)
