"""64-bit perceptual hashes (DCT pHash), their Hamming distance, and the bands that index them.

The hash is imagehash's pHash (greyscale 32x32, 2-D DCT, the 8x8 lowest frequencies thresholded
at their median), taken from a working copy no larger than `WORK_SIDE`, so a 4K render costs a few
milliseconds and a re-encoded or slightly resized copy hashes the same.

Bands: the hash is split into four 16-bit bands for the duplicate index. Two hashes within
Hamming distance 3 differ in at most 3 bits, so at least one of the 4 bands is identical
(pigeonhole). Band i holds the bits at DCT position (row, col) with (row + col) mod 4 == i: the
lowest frequencies (the horizon, the sky/ground split) are nearly constant across garden scenes,
and spreading them over all bands keeps every band selective.
"""

from __future__ import annotations

import imagehash
from PIL import Image

HASH_BITS = 64
BAND_COUNT = 4
BAND_BITS = HASH_BITS // BAND_COUNT
WORK_SIDE = 512  # the longest side of the working copy all image measures use
# Bit index i (0 = most significant) is DCT position (i // 8, i % 8).
BAND_POSITIONS: tuple[tuple[int, ...], ...] = tuple(
    tuple(i for i in range(HASH_BITS) if (i // 8 + i % 8) % BAND_COUNT == band) for band in range(BAND_COUNT)
)
_SIGN = 1 << (HASH_BITS - 1)
_MASK = (1 << HASH_BITS) - 1


def working_copy(image: Image.Image) -> Image.Image:
    """An RGB copy whose longest side is at most WORK_SIDE (shrunk in whole steps first: fast at 4K)."""
    scale = WORK_SIDE / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    return image if image.mode == "RGB" else image.convert("RGB")


def phash(image: Image.Image) -> int:
    """The 64-bit pHash of an image, as an unsigned integer (first DCT coefficient = top bit).

    Call it on a `working_copy`, so every caller hashes through the same resampling."""
    bits = imagehash.phash(image, hash_size=8).hash.flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & _MASK).bit_count()


def bands(value: int) -> tuple[int, ...]:
    """The four 16-bit bands of a hash (see the module docstring for the bit layout)."""
    result = []
    for positions in BAND_POSITIONS:
        band = 0
        for index in positions:
            band = (band << 1) | ((value >> (HASH_BITS - 1 - index)) & 1)
        result.append(band)
    return tuple(result)


def to_signed(value: int) -> int:
    """Unsigned 64-bit → the signed value a BIGINT column holds."""
    value &= _MASK
    return value - (1 << HASH_BITS) if value & _SIGN else value


def to_unsigned(value: int) -> int:
    return value & _MASK


def to_hex(value: int) -> str:
    return f"{value & _MASK:016x}"
