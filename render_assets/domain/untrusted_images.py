"""Opening image files we did not make (provider replies, customers' photos) at a bounded cost.

Pillow may only use the PNG, JPEG and WebP decoders. Two checks run before Pillow sees the
bytes, because it would pay first: a WebP's canvas size (its decoder allocates the canvas when
it is created) and a JPEG's metadata segments (its opener joins EXIF segments in quadratic time).
The pixel limit is checked on the header before any pixel is decoded; compressed text and ICC
bombs are stopped by Pillow's own limits (`PngImagePlugin.MAX_TEXT_CHUNK`, `MAX_TEXT_MEMORY`),
and truncated files fail because nothing sets `ImageFile.LOAD_TRUNCATED_IMAGES`.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image

MIB = 1024 * 1024
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
MAX_METADATA_BYTES = 8 * MIB
NOT_AN_IMAGE = "image does not decode (not a PNG, JPEG or WebP file)"
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


class UnsafeImage(Exception):
    """The file is not an image we will decode; the message says why, naming no content."""


@contextmanager
def opened(data: bytes, *, max_pixels: int, max_metadata_bytes: int = MAX_METADATA_BYTES) -> Iterator[Image.Image]:
    """The image, opened and header-checked but not loaded; any decoding failure in the block
    (`image.load()` included) becomes UnsafeImage."""
    canvas = webp_canvas(data)
    if canvas is not None:
        check_pixels(*canvas, max_pixels=max_pixels)
    if jpeg_metadata_bytes(data, stop_after=max_metadata_bytes) > max_metadata_bytes:
        raise UnsafeImage(f"image metadata exceeds {max_metadata_bytes // MIB} MiB")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=list(FORMATS)) as image:
                if image.format not in FORMATS:  # e.g. MPO, which the JPEG opener may return
                    raise UnsafeImage(NOT_AN_IMAGE)
                check_pixels(image.width, image.height, max_pixels=max_pixels)
                yield image
        except Image.UnidentifiedImageError:
            raise UnsafeImage(NOT_AN_IMAGE) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise UnsafeImage(f"image exceeds the {max_pixels // 1_000_000} MP limit") from None
        except _DECODE_ERRORS:
            raise UnsafeImage("image does not decode") from None


def check_pixels(width: int, height: int, *, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise UnsafeImage(f"image of {width}x{height} exceeds the {max_pixels // 1_000_000} MP limit")


def metadata_bytes(image: Image.Image) -> int:
    """Text, ICC, EXIF and APP segments as Pillow read them."""
    size = sum(len(value) for value in image.info.values() if isinstance(value, bytes | str))
    return size + sum(len(segment) for _marker, segment in getattr(image, "applist", ()))


def webp_canvas(data: bytes) -> tuple[int, int] | None:
    """A WebP file's canvas size from its header (WebP container spec: VP8X, VP8L, VP8 chunks)."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    kind = data[12:16]
    if kind == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if kind == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    return None


def jpeg_metadata_bytes(data: bytes, *, stop_after: int) -> int:
    """Bytes of APPn and COM segments before a JPEG's first scan (JPEG spec B.1.1), counted
    without Pillow; counting stops once past `stop_after`."""
    if not data.startswith(b"\xff\xd8"):
        return 0
    pos, total = 2, 0
    while pos + 4 <= len(data) and data[pos] == 0xFF and total <= stop_after:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            total += length
        pos += 2 + length
    return total
