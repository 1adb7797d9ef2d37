"""Known provider failure images (placeholders, error cards, empty frames) and matching against them.

The shipped set lives in `render_assets/data/failure_images/*.png`; add a PNG there (for example
a placeholder a provider was seen returning) and it is matched from the next process start. The
built-in ones are drawn by this module: `python -m render_assets.domain.failure_images` redraws
them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from render_assets.domain import phash

FAILURE_IMAGES = Path(__file__).resolve().parent.parent / "data" / "failure_images"
CARD_SIDE = 1024


@dataclass(frozen=True)
class KnownFailure:
    name: str
    hash: int


@dataclass(frozen=True)
class FailureMatch:
    name: str
    distance: int


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size)


def _centred_text(draw: ImageDraw.ImageDraw, centre: tuple[float, float], text: str, size: int, fill: str) -> None:
    font = _font(size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((centre[0] - (right - left) / 2, centre[1] - (bottom - top) / 2), text, font=font, fill=fill)


def image_unavailable(side: int = CARD_SIDE) -> Image.Image:
    """The grey "image unavailable" card: a picture icon and a caption."""
    card = Image.new("RGB", (side, side), "#d4d4d4")
    draw = ImageDraw.Draw(card)
    u = side / 100
    draw.rounded_rectangle((30 * u, 25 * u, 70 * u, 58 * u), radius=3 * u, outline="#8a8a8a", width=round(2 * u))
    draw.polygon([(33 * u, 55 * u), (45 * u, 38 * u), (54 * u, 50 * u), (59 * u, 44 * u), (67 * u, 55 * u)], "#8a8a8a")
    draw.ellipse((56 * u, 30 * u, 63 * u, 37 * u), fill="#8a8a8a")
    _centred_text(draw, (50 * u, 70 * u), "Image unavailable", round(6 * u), "#6e6e6e")
    return card


def black_frame(side: int = CARD_SIDE) -> Image.Image:
    """An empty black frame with a dim warning sign and caption off-centre, as providers return
    when generation aborts. (Off-centre: a symmetric picture has near-zero DCT terms, whose
    signs, and so pHash bits, noise would decide.)"""
    frame = Image.new("RGB", (side, side), "#050505")
    draw = ImageDraw.Draw(frame)
    u = side / 100
    draw.polygon([(18 * u, 14 * u), (30 * u, 36 * u), (6 * u, 36 * u)], fill="#6a6a6a")
    draw.rectangle((17 * u, 20 * u, 19 * u, 29 * u), fill="#050505")
    draw.rectangle((17 * u, 31 * u, 19 * u, 33 * u), fill="#050505")
    draw.rectangle((6 * u, 80 * u, 70 * u, 86 * u), fill="#3a3a3a")
    return frame


def checkerboard(side: int = CARD_SIDE) -> Image.Image:
    """The transparency checkerboard an empty (fully transparent) result shows as."""
    board = Image.new("RGB", (side, side), "#ffffff")
    draw = ImageDraw.Draw(board)
    tile = side // 16
    for row in range(16):
        for col in range(16):
            if (row + col) % 2:
                draw.rectangle((col * tile, row * tile, (col + 1) * tile - 1, (row + 1) * tile - 1), fill="#cccccc")
    return board


def content_blocked(side: int = CARD_SIDE) -> Image.Image:
    """A white safety-filter card: a struck-through circle and a caption."""
    card = Image.new("RGB", (side, side), "#fafafa")
    draw = ImageDraw.Draw(card)
    u = side / 100
    draw.ellipse((35 * u, 22 * u, 65 * u, 52 * u), outline="#c62828", width=round(3 * u))
    draw.line((39.5 * u, 26.5 * u, 60.5 * u, 47.5 * u), fill="#c62828", width=round(3 * u))
    _centred_text(draw, (50 * u, 64 * u), "Content not available", round(5.5 * u), "#555555")
    return card


BUILT_IN: dict[str, Callable[[int], Image.Image]] = {
    "image-unavailable": image_unavailable,
    "black-frame": black_frame,
    "checkerboard": checkerboard,
    "content-blocked": content_blocked,
}


def hash_of(image: Image.Image) -> int:
    return phash.phash(phash.working_copy(image))


@lru_cache(maxsize=4)
def known_failures(folder: Path = FAILURE_IMAGES) -> tuple[KnownFailure, ...]:
    """The shipped failure images, hashed once per process."""
    known = []
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as image:
            known.append(KnownFailure(path.stem, hash_of(image)))
    return tuple(known)


def closest_failure(value: int, known: tuple[KnownFailure, ...] | None = None) -> FailureMatch | None:
    """The known failure image nearest to a hash (None when none are shipped)."""
    candidates = known_failures() if known is None else known
    best = min(candidates, key=lambda item: (phash.hamming(item.hash, value), item.name), default=None)
    return None if best is None else FailureMatch(best.name, phash.hamming(best.hash, value))


def write_built_in(folder: Path = FAILURE_IMAGES) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in BUILT_IN.items():
        path = folder / f"{name}.png"
        draw(CARD_SIDE).save(path, "PNG", optimize=True)
        written.append(path)
    return written


if __name__ == "__main__":
    for written in write_built_in(Path(sys.argv[1]) if len(sys.argv) > 1 else FAILURE_IMAGES):
        print(written)
