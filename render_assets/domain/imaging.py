"""Image encoding, colour management and safe decoding with Pillow."""

from __future__ import annotations

import functools
import io
import logging
import warnings
from dataclasses import dataclass

from PIL import Image, ImageCms

log = logging.getLogger(__name__)

# A 4096x4096 render is 16.8 MP; anything far above that is a decompression bomb, not a render.
MAX_DECODED_PIXELS = 40_000_000
THUMBNAIL_SIZE = (300, 300)

WEB_MAX_SIDE = 2048

MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "AVIF": "image/avif"}
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "AVIF": "avif"}


class UnreadableImage(ValueError):
    pass


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    format: str
    width: int
    height: int

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def decode(data: bytes) -> Image.Image:
    """Decode fully, refusing decompression bombs and truncated or unknown files."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_DECODED_PIXELS:
                raise UnreadableImage(f"image of {image.width}x{image.height} exceeds the pixel limit")
            image.load()
        except UnreadableImage:
            raise
        except (
            OSError,
            SyntaxError,
            ValueError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ) as error:
            raise UnreadableImage(f"image does not decode: {error}") from None
    return image


def encode(
    image: Image.Image, image_format: str, *, fast: bool = False, icc_profile: bytes | None = None
) -> EncodedImage:
    """Encode for delivery (`fast` trades size for speed, for intermediate values).

    Settings follow the measured 4K costs (providers.md §B4). With `icc_profile`, that profile is
    the only metadata written (callers pass an image whose `info` is empty, see `to_srgb`).
    """
    if image_format not in MEDIA_TYPES:
        raise ValueError(f"unsupported image format {image_format!r}")
    buffer = io.BytesIO()
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    profile: dict[str, bytes] = {"icc_profile": icc_profile} if icc_profile else {}
    if image_format == "PNG":
        rgb.save(buffer, "PNG", compress_level=1 if fast else 6, **profile)
    elif image_format == "JPEG":
        rgb.save(buffer, "JPEG", quality=90, optimize=True, progressive=True, exif=b"", **profile)
    elif image_format == "WEBP":
        rgb.save(buffer, "WEBP", quality=80, method=4, exif=b"", xmp=b"", **profile)
    else:
        # Speed 8: on a 4096x4096 render speed 6 took 27 s and speed 8 3 s here, for the same size (2.2 MB).
        rgb.save(buffer, "AVIF", quality=60, speed=8, exif=b"", xmp=b"", **profile)
    return EncodedImage(buffer.getvalue(), image_format, rgb.width, rgb.height)


# The ICC header's creation date (bytes 24-35, ICC.1 §7.2.8). LittleCMS stamps the time it built
# the profile there, so every process would embed different bytes in identical pixels.
_ICC_CREATED = slice(24, 36)
_FIXED_ICC_DATE = bytes.fromhex("07d000010001000000000000")  # 2000-01-01 00:00:00


@functools.cache
def srgb_profile() -> bytes:
    """The sRGB ICC profile embedded in every delivered file (588 bytes), byte for byte the same in
    every process, so identical pixels encode to identical files (and object names).

    The profile's ID field is zero (LittleCMS computes none), so fixing the date needs no new ID."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[_ICC_CREATED] = _FIXED_ICC_DATE
    return bytes(profile)


def to_srgb(image: Image.Image) -> Image.Image:
    """An RGB copy in sRGB with empty `info` (no EXIF, XMP, text chunks or source profile).

    A source with an embedded ICC profile is converted through LittleCMS; one without is taken
    as sRGB already, as browsers do. A profile that cannot be applied (corrupt, or not for the
    image's colour space) is ignored with a warning: the render is already paid for.
    """
    icc = image.info.get("icc_profile")
    converted: Image.Image | None = None
    if icc:
        source = image if image.mode in ("RGB", "RGBA", "CMYK") else image.convert("RGB")
        try:
            converted = ImageCms.profileToProfile(
                source,
                ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                ImageCms.ImageCmsProfile(io.BytesIO(srgb_profile())),
                renderingIntent=ImageCms.Intent.PERCEPTUAL,
                outputMode="RGB",
            )
        except (ImageCms.PyCMSError, OSError, ValueError) as error:
            log.warning("ignoring an embedded colour profile that cannot be applied: %s", error)
    if converted is None:
        converted = image.convert("RGB") if image.mode != "RGB" else image.copy()
    converted.info = {}
    return converted


def fit_within(image: Image.Image, max_side: int = WEB_MAX_SIDE) -> Image.Image:
    """The image scaled down so its long side is at most `max_side`; never enlarged."""
    scale = max_side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def thumbnail(image: Image.Image) -> Image.Image:
    """A cover-cropped square, the size of the web app's gallery tiles."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    # `box` crops while resampling: no full-size copy of a 4K square (67 MB) on the way.
    # reducing_gap: shrink by whole factors first, so a 4K source costs milliseconds, not a full LANCZOS pass.
    return rgb.resize(
        THUMBNAIL_SIZE, Image.Resampling.LANCZOS, box=(left, top, left + side, top + side), reducing_gap=3.0
    )
