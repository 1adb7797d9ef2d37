"""Image encoding and safe decoding with Pillow."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

# A 4096x4096 render is 16.8 MP; anything far above that is a decompression bomb, not a render.
MAX_DECODED_PIXELS = 40_000_000
THUMBNAIL_SIZE = (300, 300)

MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}


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


def encode(image: Image.Image, image_format: str, *, fast: bool = False) -> EncodedImage:
    """Encode for delivery (`fast` trades size for speed, for intermediate values)."""
    buffer = io.BytesIO()
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if image_format == "PNG":
        rgb.save(buffer, "PNG", compress_level=1 if fast else 6)
    elif image_format == "JPEG":
        rgb.save(buffer, "JPEG", quality=90, optimize=True, progressive=True)
    elif image_format == "WEBP":
        rgb.save(buffer, "WEBP", quality=80, method=4)
    else:
        raise ValueError(f"unsupported image format {image_format!r}")
    return EncodedImage(buffer.getvalue(), image_format, rgb.width, rgb.height)


def thumbnail(image: Image.Image) -> Image.Image:
    """A cover-cropped square, the size of the web app's gallery tiles."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    # reducing_gap: shrink by whole factors first, so a 4K source costs milliseconds, not a full LANCZOS pass.
    return square.convert("RGB").resize(THUMBNAIL_SIZE, Image.Resampling.LANCZOS, reducing_gap=3.0)
