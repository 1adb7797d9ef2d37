"""The bundled example site photo and its mask (`render_assets/data/examples/`), drawn here.

A synthetic yard, 1024x768: sky, a house with a door and windows, a board fence, a lawn with
mowing stripes and blades, a flagstone path, and a bare bed of soil in front of the fence, which
the mask marks (white = redesign, black = keep). Deterministic (fixed seeds, Pillow and numpy
only), so `python -m render_assets_tests.example_photos` redraws the same files; the tests check
that the shipped files are these pixels.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from render_assets.adapters.example_images import EXAMPLE_IMAGES

SIZE = WIDTH, HEIGHT = 1024, 768
PHOTO_NAME, MASK_NAME = "backyard-site.png", "backyard-site-mask.png"
HORIZON = 330  # where the lawn meets the fence and the house
# The bed in front of the fence, right of the path: the marked area (a polygon in pixels).
BED = [(600, 392), (975, 388), (1000, 470), (960, 540), (640, 552), (575, 470)]
SEED = 20_261_207


def site_photo() -> Image.Image:
    """The yard, as a customer's phone would photograph it (soft light, some texture everywhere)."""
    rng = np.random.default_rng(SEED)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    sky = np.stack([120 + 80 * y / HORIZON, 165 + 60 * y / HORIZON, 225 + 20 * y / HORIZON], -1)
    depth = np.clip((y - HORIZON) / (HEIGHT - HORIZON), 0, 1)[..., None]
    lawn = (1 - depth) * np.array([120, 160, 80]) + depth * np.array([70, 135, 50])
    stripes = np.where((x // 96) % 2 == 0, 1.06, 0.95)[..., None] * np.clip(depth * 3, 0, 1)
    lawn = lawn * (1 + (stripes - 1))
    base = np.where((y < HORIZON)[..., None], sky, lawn)
    # Coarse noise, upscaled: texture the QA's detail measure sees, which still compresses well.
    grain = rng.normal(0, 5, size=(HEIGHT // 4, WIDTH // 4, 1)).repeat(4, 0).repeat(4, 1)
    photo = Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(photo)
    _clouds(draw, random.Random(SEED))
    _house(draw)
    _fence(draw)
    _blades(draw, random.Random(SEED + 4))
    _path(draw, random.Random(SEED + 1))
    _bed(draw, random.Random(SEED + 2))
    _tree(draw, random.Random(SEED + 3))
    return photo


def site_mask() -> Image.Image:
    """The bed, white on black, at the photo's size."""
    mask = Image.new("L", SIZE, 0)
    ImageDraw.Draw(mask).polygon(BED, fill=255)
    return mask


def _clouds(draw: ImageDraw.ImageDraw, rng: random.Random) -> None:
    for _ in range(5):
        cx, cy, r = rng.uniform(0, WIDTH), rng.uniform(30, 160), rng.uniform(40, 90)
        for _ in range(6):
            dx, dy, k = rng.uniform(-r, r), rng.uniform(-r / 4, r / 4), rng.uniform(0.4, 0.8)
            rx, ry = r * k, r * k / 2.5
            draw.ellipse((cx + dx - rx, cy + dy - ry, cx + dx + rx, cy + dy + ry), (238, 242, 246))


def _house(draw: ImageDraw.ImageDraw) -> None:
    left, right, top, bottom = 70, 470, 150, 372
    draw.rectangle((left, top, right, bottom), fill=(214, 200, 178))
    for line in range(top + 8, bottom, 9):  # siding
        draw.line((left, line, right, line), fill=(190, 176, 155), width=2)
    draw.polygon([(left - 30, top + 4), (270, 52), (right + 30, top + 4)], fill=(110, 62, 52))
    for line in range(60, top, 12):  # roof shingles
        half = (line - 52) * 230 / (top - 48)
        draw.line((270 - half, line, 270 + half, line), fill=(88, 48, 40), width=2)
    for window in ((110, 200), (350, 200)):
        wx, wy = window
        draw.rectangle((wx, wy, wx + 70, wy + 60), fill=(248, 248, 244))
        draw.rectangle((wx + 5, wy + 5, wx + 65, wy + 55), fill=(96, 128, 150))
        draw.line((wx + 35, wy + 5, wx + 35, wy + 55), fill=(248, 248, 244), width=4)
        draw.line((wx + 5, wy + 30, wx + 65, wy + 30), fill=(248, 248, 244), width=4)
    draw.rectangle((240, 262, 300, 372), fill=(70, 90, 80))  # the door
    draw.ellipse((288, 316, 294, 322), fill=(210, 180, 90))
    draw.rectangle((225, 366, 315, 380), fill=(160, 156, 150))  # the step


def _fence(draw: ImageDraw.ImageDraw) -> None:
    top, bottom = 250, 384
    for board in range(470, WIDTH, 18):
        shade = 150 + (board * 7) % 23
        draw.polygon(
            [(board, top + 6), (board + 8, top), (board + 16, top + 6), (board + 16, bottom), (board, bottom)],
            fill=(shade, shade - 40, shade - 85),
        )
        draw.line((board + 16, top + 6, board + 16, bottom), fill=(96, 66, 40), width=2)
    for rail in (top + 30, bottom - 30):
        draw.rectangle((470, rail, WIDTH, rail + 8), fill=(120, 86, 52))


def _path(draw: ImageDraw.ImageDraw, rng: random.Random) -> None:
    """Flagstones from the viewer to the door step, smaller with distance."""
    y = HEIGHT
    while y > 382:
        t = (y - HORIZON) / (HEIGHT - HORIZON)
        size = 16 + 70 * t
        cx = 270 + (y - 380) * 0.25 + rng.uniform(-6, 6)
        for dx in (-0.55, 0.55):
            x0 = cx + dx * size - size * 0.5
            grey = rng.randint(150, 185)
            draw.rounded_rectangle(
                (x0, y - size * 0.45, x0 + size * 0.95, y), radius=size / 6, fill=(grey, grey - 6, grey - 16)
            )
        y -= size * 0.55


def _bed(draw: ImageDraw.ImageDraw, rng: random.Random) -> None:
    """Bare soil with clods and a few weeds: what the customer wants redesigned."""
    inner = [(x + (788 - x) * 0.05, y + (466 - y) * 0.05) for x, y in BED]
    draw.polygon(inner, fill=(112, 84, 58))
    inside = site_mask()
    for _ in range(420):
        x, y = rng.uniform(600, 980), rng.uniform(395, 540)
        if not inside.getpixel((int(x), int(y))):
            continue
        r = rng.uniform(1.5, 4)
        tone = rng.randint(-25, 25)
        draw.ellipse((x - r, y - r * 0.6, x + r, y + r * 0.6), fill=(112 + tone, 84 + tone, 58 + tone))
    draw.line(inner + inner[:1], fill=(150, 140, 128), width=5)  # an edging of stones
    for _ in range(14):
        x, y = rng.uniform(630, 950), rng.uniform(410, 530)
        for _ in range(5):
            draw.line((x, y, x + rng.uniform(-8, 8), y - rng.uniform(6, 14)), fill=(80, 130, 50), width=2)


def _tree(draw: ImageDraw.ImageDraw, rng: random.Random) -> None:
    draw.rectangle((26, 250, 44, 470), fill=(92, 64, 42))
    for _ in range(40):
        x, y, r = rng.uniform(-40, 110), rng.uniform(140, 300), rng.uniform(22, 44)
        green = rng.randint(80, 130)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(green - 45, green, green - 60))


def _blades(draw: ImageDraw.ImageDraw, rng: random.Random) -> None:
    for _ in range(2600):
        x, t = rng.uniform(0, WIDTH), rng.random() ** 0.7
        y = HORIZON + 55 + t * (HEIGHT - HORIZON - 55)
        length = 3 + t * 12
        colour = (45, 95, 35) if rng.random() < 0.6 else (150, 190, 100)
        draw.line((x, y, x + rng.uniform(-0.4, 0.4) * length, y - length), fill=colour, width=1 + int(t * 2))


def write(folder: Path = EXAMPLE_IMAGES) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in ((PHOTO_NAME, site_photo()), (MASK_NAME, site_mask())):
        path = folder / name
        image.save(path, "PNG", optimize=True)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLE_IMAGES):
        print(f"{path} ({path.stat().st_size // 1024} KiB)")
