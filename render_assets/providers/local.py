"""A deterministic procedural garden renderer: Pillow (plus numpy for the soft background).

With the customer's photo it paints over a light wash of it; with a mask too, it paints only
inside the mask and leaves the photo's pixels as they are outside it. The photo and the mask are
fitted to the output as `fitting.fit_exact` fits any provider's image (centre crop to the
requested aspect, then resample), so outside the mask the output is exactly
`fit_exact(photo, width, height).image`."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageChops, ImageDraw

from .base import GeneratedImage, GenerationRequest, ProviderError, SceneElement
from .decoding import decode_image
from .edit_masks import fit_mask, read_mask
from .fitting import fit_exact

MIN_SIDE, MAX_SIDE = 256, 4096
RGB = tuple[int, int, int]
Arr = npt.NDArray[np.floating[Any]]
# (zenith, horizon) pairs: clear day, dusk, overcast, golden hour.
SKIES: list[tuple[RGB, RGB]] = [
    ((70, 130, 205), (200, 225, 240)),
    ((95, 110, 170), (245, 195, 160)),
    ((120, 140, 160), (215, 220, 222)),
    ((60, 150, 215), (245, 230, 185)),
]
LAWNS: list[tuple[RGB, RGB]] = [((150, 185, 95), (60, 120, 45)), ((165, 180, 100), (85, 125, 50))]
SOIL: RGB = (120, 92, 62)
PHOTO_WEIGHT = 0.75  # share of the customer's photo in the background, when there is one


def _jitter(c: RGB, rng: random.Random, amount: int = 18) -> RGB:
    """The colour nudged per channel, so palettes differ by seed."""
    r, g, b = (max(0, min(255, v + rng.randint(-amount, amount))) for v in c)
    return (r, g, b)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    """Blend two colours; t=0 gives a."""
    r, g, bb = (round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return (r, g, bb)


def _lerp(a: RGB, b: RGB, t: Arr) -> Arr:
    ca, cb = np.array(a, np.float32), np.array(b, np.float32)
    return ca + (cb - ca) * t[..., None]


def _smooth_noise(rng: random.Random, n: int, cells: int = 16) -> Arr:
    """Seamlessly tileable low-frequency noise in 0..1, n x n: a 3x3-tiled random tile upscaled."""
    tile = np.frombuffer(rng.randbytes(cells * cells), np.uint8).reshape(cells, cells)
    big = Image.fromarray(np.tile(tile, (3, 3)), "L").resize((3 * n, 3 * n), Image.Resampling.BICUBIC)
    return np.asarray(big.crop((n, n, 2 * n, 2 * n)), np.float32) / 255.0


def _sky(xx: Arr, yy: Arr, w: int, hz: int, rng: random.Random) -> tuple[Arr, RGB]:
    """Seed-tinted zenith-to-horizon gradient with soft clouds; also returns the horizon haze colour."""
    top, low = (_jitter(c, rng) for c in rng.choice(SKIES))
    sky = _lerp(top, low, np.clip(yy / hz, 0.0, 1.0) ** 1.4)
    for _ in range(rng.randint(2, 6)):
        cx, cy = rng.uniform(0, w), rng.uniform(0.08, 0.7) * hz
        rx = rng.uniform(0.07, 0.22) * w
        blob = np.exp(-(((xx - cx) / rx) ** 2 + ((yy - cy) / (rx * 0.22)) ** 2) * 2.0)
        sky += (np.float32(248) - sky) * (blob * rng.uniform(0.5, 0.85))[..., None]
    return sky, low


def _lawn(xx: Arr, yy: Arr, w: int, h: int, hz: int, haze: RGB, rng: random.Random) -> Arr:
    """Green ground, hazier far away, with mottling, worn soil patches and mowing stripes."""
    far, near = (_jitter(c, rng, 12) for c in rng.choice(LAWNS))
    dy = np.clip((yy - hz) / max(1, h - hz), 0.0, 1.0)
    lawn = _lerp(_mix(far, haze, 0.25), near, dy**0.6)
    # Texture lives in ground coordinates so patches shrink and flatten towards the horizon.
    depth = np.float32(h) / np.maximum(yy - hz, 1.0)
    gx, gz = (xx - rng.uniform(0.2, 0.8) * w) / w * depth, depth * 0.35
    stripes = np.tanh(3.0 * np.sin(gx * rng.uniform(9.0, 16.0))) * np.clip(dy * 3.0, 0, 1)
    n = 256
    tex = _smooth_noise(rng, n)
    mottle = tex[(gz * n).astype(np.int64) % n, (gx * n * 0.6).astype(np.int64) % n]
    fade = np.clip(dy * 4.0, 0.0, 1.0)  # near the horizon the texture would only alias
    lawn *= (1.0 + fade * (0.3 * (mottle - 0.5) + 0.06 * stripes))[..., None]
    worn = np.clip((mottle - 0.78) * 3.0, 0.0, 0.5) * fade
    return lawn + (np.array(SOIL, np.float32) - lawn) * worn[..., None]


def _background(w: int, h: int, hz: int, rng: random.Random) -> tuple[Image.Image, RGB]:
    """Sky and lawn computed small then upscaled: both are soft, so full resolution would be wasted."""
    ds = max(1, math.ceil(max(w, h) / 384))
    lw, lh = math.ceil(w / ds), math.ceil(h / ds)
    yy = ((np.arange(lh, dtype=np.float32) + 0.5) * ds)[:, None] * np.ones((1, lw), np.float32)
    xx = ((np.arange(lw, dtype=np.float32) + 0.5) * ds)[None, :] * np.ones((lh, 1), np.float32)
    sky, haze = _sky(xx, yy, w, hz, rng)
    lawn = _lawn(xx, yy, w, h, hz, haze, rng)
    arr = np.where((yy < hz)[..., None], sky, lawn).clip(0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB").resize((w, h), Image.Resampling.BILINEAR), haze


def _hills(d: ImageDraw.ImageDraw, w: int, hz: int, unit: float, haze: RGB, rng: random.Random) -> None:
    """Two ridges, the farther one hazier, plus a dark treeline sitting on the horizon."""
    for layer, (tint, amp) in enumerate((((110, 150, 110), 0.16), ((70, 115, 65), 0.08))):
        col = _mix(tint, haze, 0.55 - 0.3 * layer)
        bands = ((1.0, 3.0), (3.0, 7.0), (8.0, 15.0))
        waves = [(rng.uniform(lo, hi), rng.uniform(0, math.tau), k + 1.0) for k, (lo, hi) in enumerate(bands)]
        ridge = [sum(math.sin(f * i / 64 * math.pi + p) / k for f, p, k in waves) for i in range(65)]
        # Keep the ridge above the horizon: a dip below it would paint hill colour onto the lawn.
        pts = [(w * i / 64, hz - unit * amp * max(0.15, 1.2 + r) / 2.2) for i, r in enumerate(ridge)]
        d.polygon([*pts, (w, hz + 2), (0, hz + 2)], fill=col)
    r = max(2.0, unit / 40)
    x = -r
    while x < w + r:
        rr = r * rng.uniform(0.6, 1.4)
        g = rng.randint(55, 85)
        d.ellipse((x - rr, hz - rr * 1.6, x + rr, hz + 1), fill=(g - 15, g + 20, g - 25))
        x += rr * rng.uniform(0.8, 1.5)


def _grass(d: ImageDraw.ImageDraw, w: int, h: int, hz: int, unit: float, rng: random.Random) -> None:
    """Short blade strokes, longer towards the viewer, so the lawn has edges at every size."""
    for _ in range(min(3000, w * h // 5000)):
        x, t = rng.uniform(0, w), rng.random() ** 0.7
        y = hz + t * (h - hz)
        ln = 2 + t * unit * 0.03
        a = rng.randint(40, 110)
        col = (30, 70, 25, a) if rng.random() < 0.6 else (190, 215, 130, a)
        d.line((x, y, x + rng.uniform(-0.4, 0.4) * ln, y - ln), fill=col, width=max(1, int(t * unit / 250)))


def _shadow(d: ImageDraw.ImageDraw, x: float, y: float, s: float) -> None:
    """A translucent contact shadow, cast slightly to the right."""
    d.ellipse((x - s * 0.5, y - s * 0.1, x + s * 0.6, y + s * 0.1), fill=(20, 40, 15, 80))


def _plant(d: ImageDraw.ImageDraw, x: float, y: float, s: float, name: str, rng: random.Random) -> None:
    """A tree (trunk + shaded canopy) or, for shrub-like names, a low flowering bush."""
    _shadow(d, x, y, s)
    low = any(k in name.lower() for k in ("shrub", "hedge", "bush", "grass", "flower", "lavender"))
    if low or rng.random() < 0.25:
        cy, rx, ry = y - s * 0.25, s * 0.5, s * 0.3
    else:
        tw = max(1.0, s * 0.08)
        d.rectangle((x - tw, y - s * 0.55, x + tw, y), fill=(95, 65, 40))
        cy, rx, ry = y - s * 0.85, s * 0.42, s * 0.45
    g = rng.randint(-15, 15)
    for dark, off in (((35, 85 + g, 35), 0.0), ((60, 125 + g, 50), -0.12), ((105, 165 + g, 75), -0.28)):
        k = 1.0 + off * 1.5
        for _ in range(3):
            ex, ey = x + rng.uniform(-0.35, 0.35) * rx + off * rx, cy + rng.uniform(-0.3, 0.3) * ry + off * ry
            d.ellipse((ex - rx * k * 0.7, ey - ry * k * 0.7, ex + rx * k * 0.7, ey + ry * k * 0.7), fill=dark)
    if low:
        bloom = rng.choice([(200, 120, 210), (240, 220, 90), (235, 110, 110), (250, 250, 245)])
        for _ in range(8):
            fx, fy, fr = x + rng.uniform(-0.8, 0.8) * rx, cy + rng.uniform(-0.7, 0.5) * ry, max(1.0, s * 0.03)
            d.ellipse((fx - fr, fy - fr, fx + fr, fy + fr), fill=bloom)


def _hardscape(d: ImageDraw.ImageDraw, x: float, y: float, s: float, name: str, rng: random.Random) -> None:
    """A paved trapezoid in rough perspective with staggered joints: long for paths, wide for patios."""
    path = any(k in name.lower() for k in ("path", "walk", "step"))
    top_w, bot_w, depth = (s * 0.2, s * 0.45, s * 1.2) if path else (s * 0.55, s * 0.8, s * 0.45)
    top, bot = y - depth / 2, y + depth / 2
    stone = _jitter((175, 165, 150), rng, 12)
    d.polygon([(x - top_w, top), (x + top_w, top), (x + bot_w, bot), (x - bot_w, bot)], fill=stone)
    rows, joint = 6 if path else 4, (120, 112, 100)
    for i in range(rows + 1):
        t = i / rows
        ry, half = top + t * depth, top_w + (bot_w - top_w) * t
        d.line((x - half, ry, x + half, ry), fill=joint, width=max(1, int(s / 120)))
        if i < rows:
            for j in range(-2, 3):
                jx = x + (j + 0.5 * (i % 2)) * half * 0.45
                d.line((jx, ry, jx, ry + depth / rows), fill=joint, width=max(1, int(s / 160)))
    d.line((x - top_w, top, x + top_w, top), fill=(230, 225, 215), width=max(1, int(s / 90)))


def _feature(d: ImageDraw.ImageDraw, x: float, y: float, s: float, name: str, rng: random.Random) -> None:
    """A bench or pergola when the name says so, otherwise a boulder."""
    kind = next((k for k in ("bench", "pergola") if k in name.lower()), "boulder")
    _shadow(d, x, y, s)
    wood, dark, lw = (150, 105, 65), (95, 65, 40), max(1, int(s / 40))
    if kind == "bench":
        d.rectangle((x - s * 0.45, y - s * 0.3, x + s * 0.45, y - s * 0.22), fill=wood)
        d.rectangle((x - s * 0.45, y - s * 0.55, x + s * 0.45, y - s * 0.45), fill=dark)
        for lx in (-0.4, 0.35):
            d.rectangle((x + lx * s, y - s * 0.55, x + (lx + 0.05) * s, y), fill=dark)
    elif kind == "pergola":
        for px, py, k in ((-0.35, -0.15, 0.8), (0.35, -0.15, 0.8), (-0.5, 0.0, 1.0), (0.5, 0.0, 1.0)):
            d.rectangle((x + px * s, y + py * s - s * k, x + px * s + s * 0.07 * k, y + py * s), fill=wood)
        for i in range(7):
            t = i / 6
            top = (x - s * 0.55 + t * s * 1.1, y - s * 1.0)
            d.line((*top, x - s * 0.4 + t * s * 0.8, y - s * 0.95), fill=dark, width=lw)
        d.rectangle((x - s * 0.58, y - s * 1.06, x + s * 0.6, y - s * 0.97), fill=dark)
        d.rectangle((x - s * 0.45, y - s * 0.98, x + s * 0.45, y - s * 0.93), fill=dark)
    else:
        grey = rng.randint(110, 150)
        rad = [(i * math.tau / 9, s * rng.uniform(0.8, 1.1)) for i in range(9)]
        pts = [(x + math.cos(a) * r * 0.45, y - s * 0.2 - math.sin(a) * r * 0.3) for a, r in rad]
        d.polygon(pts, fill=(grey, grey - 5, grey - 12))
        lit = (grey + 45, grey + 40, grey + 30)
        d.ellipse((x - s * 0.25, y - s * 0.45, x + s * 0.05, y - s * 0.3), fill=lit)


def _lighting(d: ImageDraw.ImageDraw, x: float, y: float, s: float, name: str, rng: random.Random) -> None:
    """A small post light with a halo of stacked translucent discs."""
    s = s * 0.5
    d.rectangle((x - s * 0.04, y - s * 0.6, x + s * 0.04, y), fill=(45, 45, 50))
    cy = y - s * 0.65
    for r in (s * 0.12 * i for i in range(6, 0, -1)):
        d.ellipse((x - r, cy - r, x + r, cy + r), fill=(255, 215, 120, 30))
    d.ellipse((x - s * 0.1, cy - s * 0.1, x + s * 0.1, cy + s * 0.1), fill=(255, 248, 220))


def _water(d: ImageDraw.ImageDraw, x: float, y: float, s: float, name: str, rng: random.Random) -> None:
    """A flattened pond: rim, deepening rings, glints."""
    rx, ry = s * 0.6, s * 0.22
    d.ellipse((x - rx, y - ry, x + rx, y + ry), fill=(110, 100, 85))
    for k, col in ((0.92, (40, 85, 120)), (0.75, (60, 115, 155)), (0.45, (90, 150, 185))):
        d.ellipse((x - rx * k, y - ry * k + ry * (1 - k) * 0.3, x + rx * k, y + ry * k), fill=col)
    for _ in range(4):
        hx, hy = x + rng.uniform(-0.5, 0.3) * rx, y + rng.uniform(-0.5, 0.4) * ry
        hl = rx * rng.uniform(0.1, 0.3)
        d.line((hx, hy, hx + hl, hy), fill=(240, 250, 255, 170), width=max(1, int(s / 80)))


def _marker(d: ImageDraw.ImageDraw, x: float, y: float, s: float, name: str, rng: random.Random) -> None:
    """A neutral grey stake with a disc: something is here, of a kind we don't draw."""
    s = s * 0.6
    _shadow(d, x, y, s * 0.5)
    d.rectangle((x - s * 0.04, y - s * 0.7, x + s * 0.04, y), fill=(90, 90, 95))
    disc = (x - s * 0.2, y - s * 0.95, x + s * 0.2, y - s * 0.55)
    d.ellipse(disc, fill=(200, 200, 205), outline=(90, 90, 95), width=max(1, int(s / 40)))


Drawer = Callable[[ImageDraw.ImageDraw, float, float, float, str, random.Random], None]
DRAWERS: dict[str, Drawer] = {
    "plant": _plant,
    "hardscape": _hardscape,
    "feature": _feature,
    "lighting": _lighting,
    "water": _water,
}


def _clamp(v: float, lo: float, hi: float) -> float:
    return lo if math.isnan(v) else max(lo, min(hi, v))


def _elements(d: ImageDraw.ImageDraw, els: tuple[SceneElement, ...], w: int, h: int, hz: int, seed: int) -> int:
    """Far elements (small y) first and smaller; y maps onto the ground between horizon and bottom.

    Returns how many fell back to the generic marker."""
    generic = 0
    for i, el in sorted(enumerate(els), key=lambda p: (_clamp(p[1].y, 0.0, 1.0), p[0])):
        # Own generator per element (by input index), so adding one element doesn't restyle the others.
        rng = random.Random(seed + i)
        nx, ny = _clamp(el.x, 0.0, 1.0), _clamp(el.y, 0.0, 1.0)
        s = max(4.0, _clamp(el.size, 0.01, 1.0) * min(w, h) * (0.45 + 0.75 * ny))
        drawer = DRAWERS.get(el.category.strip().lower(), _marker)
        generic += drawer is _marker
        drawer(d, nx * w, hz + (h - hz) * (0.04 + 0.92 * ny), s, el.name, rng)
    return generic


def _grain(img: Image.Image, hz: int, rng: random.Random) -> Image.Image:
    """Fine luminance grain (a tiled random tile): weak in the sky, stronger on the ground."""
    w, h = img.size
    t = 97
    base = np.frombuffer(rng.randbytes(t * t), np.uint8).reshape(t, t).astype(np.int16) - 128
    rows = [
        np.tile((128 + base * a // 128).astype(np.uint8), (math.ceil(n / t), math.ceil(w / t)))[:n, :w]
        for a, n in ((6, hz), (22, h - hz))
    ]
    g = Image.fromarray(np.vstack(rows), "L")
    return ImageChops.add(img, Image.merge("RGB", (g, g, g)), 1.0, -128)


def _photo(data: bytes, w: int, h: int) -> Image.Image:
    """The reference photo fitted to the frame as every provider's output is (centre crop, resample)."""
    return fit_exact(decode_image("local", data), w, h).image


class LocalProvider:
    """Draws a plausible garden scene locally; no network, no cost, fully deterministic."""

    name = "local"

    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        start = time.perf_counter()
        w, h = request.width, request.height
        if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
            msg = f"size {w}x{h} outside {MIN_SIDE}..{MAX_SIDE} per side"
            raise ProviderError(msg, provider=self.name, transient=False)
        mask = read_mask(self.name, request)
        rng = random.Random(request.seed)
        hz = int(h * rng.uniform(0.34, 0.46))
        img, haze = _background(w, h, hz, rng)
        d = ImageDraw.Draw(img, "RGBA")
        # Background detail scales with the shorter side so tall or wide frames keep square-ish proportions.
        unit = min(hz, 0.4 * min(w, h))
        _hills(d, w, hz, unit, haze, rng)
        _grass(d, w, h, hz, unit, rng)
        element_seed, grain_seed = rng.getrandbits(64), rng.getrandbits(64)
        photo = None
        if request.reference_image is not None:
            # The customer's yard under a light procedural wash, the design drawn over it.
            photo = _photo(request.reference_image, w, h)
            img = Image.blend(img, photo, PHOTO_WEIGHT)
            d = ImageDraw.Draw(img, "RGBA")
        generic = _elements(d, request.elements, w, h, hz, element_seed)
        img = _grain(img, hz, random.Random(grain_seed))
        if mask is not None and photo is not None:
            # The design inside the mask only: outside, the photo's own pixels.
            img = Image.composite(img, photo, fit_mask(mask, w, h))
        elapsed = time.perf_counter() - start
        if self.latency_s > elapsed:
            time.sleep(self.latency_s - elapsed)
        return GeneratedImage(
            image=img,
            provider=self.name,
            model="procedural-v1",
            latency_s=time.perf_counter() - start,
            cost_estimate_usd=0.0,
            facts={
                "seed": request.seed,
                "elements_drawn": len(request.elements),
                "generic_markers": generic,
                "reference_image": "none" if request.reference_image is None else "blended",
                "mask": "none" if mask is None else "painted",
            },
            seed=request.seed,
            native_size=(w, h),
        )
