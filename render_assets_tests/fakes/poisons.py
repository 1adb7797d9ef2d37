"""Poisoned image files, as a broken or hostile provider could return them: decompression bombs
(tiny files declaring huge sizes), truncated files, the wrong format behind the declared type,
animated files, metadata bombs. Each is a few kilobytes and built in milliseconds; the oversize
replies are not files but bodies, and are made by the fake itself (`oversize_*`).

`POISONS` maps a name to (file bytes, the MIME type the reply declares, what the error says)."""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from render_assets.providers.decoding import MAX_ENCODED_CHARS, MAX_METADATA_BYTES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Poison:
    name: str
    data: bytes  # the image file (empty for the oversize replies, which the fake builds)
    mime_type: str  # what the reply declares
    reason: str  # the start of the ProviderError's "malformed reply: ..." detail


def _picture(size: tuple[int, int] = (64, 64), colour: tuple[int, int, int] = (90, 140, 60)) -> Image.Image:
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    return Image.blend(image, Image.new("RGB", size, colour), 0.5)


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def png_with(extra: list[bytes]) -> bytes:
    """A small valid PNG with `extra` chunks right after IHDR (where ancillary chunks go)."""
    [ihdr, *rest] = png_chunks(_encode(_picture(), "PNG"))
    return PNG_SIGNATURE + chunk(*ihdr) + b"".join(extra) + b"".join(chunk(*c) for c in rest)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring width x height RGB, with a zlib stream of a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(4096), 9)) + chunk(b"IEND", b"")


def bomb_jpeg(width: int = 65_000, height: int = 65_000) -> bytes:
    """A tiny baseline JPEG whose frame header (SOF0) claims width x height."""
    data = bytearray(_encode(_picture((16, 16)), "JPEG", quality=50))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def bomb_webp(width: int = 12_000, height: int = 10_000) -> bytes:
    """A tiny (extended-format) WebP whose canvas claims width x height: the WebP decoder
    allocates the canvas when it is created, before Pillow's own size check."""
    frames = [_picture((16, 16)), _picture((16, 16), (200, 30, 30))]
    data = bytearray(_encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True))
    assert data[12:16] == b"VP8X"
    data[24:27] = (width - 1).to_bytes(3, "little")
    data[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(data)


def bomb_webp_simple(lossless: bool, width: int = 12_000, height: int = 10_000) -> bytes:
    """A tiny simple-format WebP (one VP8L or VP8 chunk) whose bitstream header claims width x height."""
    data = bytearray(_encode(_picture((16, 16)), "WEBP", lossless=lossless))
    if lossless:
        assert data[12:16] == b"VP8L" and data[20] == 0x2F
        bits = int.from_bytes(data[21:25], "little") & ~0xFFFFFFF  # keep the alpha and version bits
        data[21:25] = (bits | (width - 1) | (height - 1) << 14).to_bytes(4, "little")
    else:
        assert data[12:16] == b"VP8 " and data[23:26] == b"\x9d\x01\x2a"
        struct.pack_into("<HH", data, 26, width, height)
    return bytes(data)


def truncated(fmt: str) -> bytes:
    noise = Image.effect_noise((256, 256), 80).convert("RGB")
    data = _encode(noise, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return data[: len(data) * 3 // 5]


def animated(fmt: str) -> bytes:
    frames = [_picture(colour=colour) for colour in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


@functools.lru_cache(maxsize=4)
def _compressed_zeros(size: int) -> bytes:
    return zlib.compress(bytes(size), 9)


def ztxt_bomb() -> bytes:
    """A zTXt chunk of 8 KiB that inflates to 8 MiB (Pillow inflates at most 1 MiB per chunk)."""
    return png_with([chunk(b"zTXt", b"Comment\0\0" + _compressed_zeros(8 * MIB))])


def itxt_bomb() -> bytes:
    return png_with([chunk(b"iTXt", b"Description\0\x01\0\0\0" + _compressed_zeros(8 * MIB))])


def iccp_bomb() -> bytes:
    return png_with([chunk(b"iCCP", b"icc\0\0" + _compressed_zeros(8 * MIB))])


def ztxt_flood() -> bytes:
    """Many zTXt chunks, each just under Pillow's per-chunk limit: a few KiB that inflate to
    more metadata than the decoder accepts in total."""
    count = MAX_METADATA_BYTES // 1_000_000 + 2
    return png_with([chunk(b"zTXt", b"Comment%d\0\0" % i + _compressed_zeros(1_000_000)) for i in range(count)])


def huge_exif_jpeg(total: int = MAX_METADATA_BYTES + MIB) -> bytes:
    """A small JPEG carrying `total` bytes of APP1 (EXIF) segments. Pillow joins the segments
    one by one (quadratic: 60 MiB of them take a minute to open), so they must be refused
    before Pillow sees them."""
    data = _encode(_picture(), "JPEG", quality=80)
    body = b"Exif\0\0" + bytes(65_000)
    segment = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    return data[:2] + segment * (total // len(segment) + 1) + data[2:]


def valid_png(size: tuple[int, int] = (64, 64)) -> bytes:
    return _encode(_picture(size), "PNG")


NOT_ALLOWED = "image does not decode (not a PNG, JPEG or WebP file)"
TOO_MANY_PIXELS = "exceeds the 40 MP limit"
DOES_NOT_DECODE = "image does not decode"
ANIMATED = "animated or multi-frame image"
METADATA = "image metadata exceeds"

_MAKERS: dict[str, Callable[[], tuple[bytes, str, str]]] = {
    # decompression bombs: tiny files declaring huge sizes
    "bomb_png": lambda: (bomb_png(), "image/png", TOO_MANY_PIXELS),
    "bomb_png_49mp": lambda: (bomb_png(7000, 7000), "image/png", TOO_MANY_PIXELS),  # under Pillow's own limit
    "bomb_jpeg": lambda: (bomb_jpeg(), "image/jpeg", TOO_MANY_PIXELS),
    "bomb_webp": lambda: (bomb_webp(), "image/webp", TOO_MANY_PIXELS),
    "bomb_webp_lossless": lambda: (bomb_webp_simple(lossless=True), "image/webp", TOO_MANY_PIXELS),
    "bomb_webp_lossy": lambda: (bomb_webp_simple(lossless=False), "image/webp", TOO_MANY_PIXELS),
    # truncated files
    "truncated_png": lambda: (truncated("PNG"), "image/png", DOES_NOT_DECODE),
    "truncated_jpeg": lambda: (truncated("JPEG"), "image/jpeg", DOES_NOT_DECODE),
    # the wrong format behind the declared type
    "gif_as_png": lambda: (_encode(_picture(), "GIF"), "image/png", NOT_ALLOWED),
    "bmp_as_png": lambda: (_encode(_picture(), "BMP"), "image/png", NOT_ALLOWED),
    "tiff_as_png": lambda: (_encode(_picture(), "TIFF"), "image/png", NOT_ALLOWED),
    "jpeg_as_png": lambda: (_encode(_picture(), "JPEG"), "image/png", "image/png declared, but the image is JPEG"),
    "png_as_webp": lambda: (valid_png(), "image/webp", "image/webp declared, but the image is PNG"),
    "png_as_text": lambda: (valid_png(), "text/plain", "the declared type is not an image type we accept"),
    # animated or multi-frame files
    "animated_png": lambda: (animated("PNG"), "image/png", ANIMATED),
    "animated_webp": lambda: (animated("WEBP"), "image/webp", ANIMATED),
    "animated_gif": lambda: (animated("GIF"), "image/png", NOT_ALLOWED),
    # huge metadata
    "ztxt_bomb": lambda: (ztxt_bomb(), "image/png", DOES_NOT_DECODE),
    "itxt_bomb": lambda: (itxt_bomb(), "image/png", DOES_NOT_DECODE),
    "iccp_bomb": lambda: (iccp_bomb(), "image/png", DOES_NOT_DECODE),
    "ztxt_flood": lambda: (ztxt_flood(), "image/png", METADATA),
    "huge_exif_jpeg": lambda: (huge_exif_jpeg(), "image/jpeg", METADATA),
    # oversize: an image past the decoder's limit in a reply the HTTP cap lets through, and replies
    # past the HTTP cap: declared in Content-Length, chunked, and gzip-compressed to a few hundred
    # KiB (an HTTP-level decompression bomb). The fake builds these bodies.
    "oversize_image": lambda: (b"", "image/png", "image of more than"),
    "oversize_reply": lambda: (b"", "image/png", "reply of more than"),
    "oversize_reply_chunked": lambda: (b"", "image/png", "reply of more than"),
    "oversize_reply_gzip": lambda: (b"", "image/png", "reply of more than"),
}
POISONS = tuple(_MAKERS)
FILE_POISONS = tuple(name for name in POISONS if not name.startswith("oversize_"))


@functools.cache
def poison(name: str) -> Poison:
    data, mime_type, reason = _MAKERS[name]()
    return Poison(name, data, mime_type, reason)


def oversize_image_b64() -> str:
    """Base64 text just past the decoder's limit (all zero bytes; never decoded)."""
    return "A" * (MAX_ENCODED_CHARS + 4)
