"""The delivered master has exactly the requested size: pick the provider's nearest native shape,
centre-crop to the requested aspect, then resample (or hand the enlargement to an upscaler)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageFilter

# The crop is the domain's rule, so a photo and its mask can be put through it too (masks).
from render_assets.domain.framing import crop_box

# Mild: restores some of the edge contrast an enlargement softens, without halos.
SHARPEN = ImageFilter.UnsharpMask(radius=1.5, percent=45, threshold=2)

# An upscaler takes the cropped image and a whole factor, and returns the enlarged image.
Upscaler = Callable[[Image.Image, int], Image.Image]


@dataclass(frozen=True)
class Fitted:
    image: Image.Image
    native_size: tuple[int, int]
    method: str  # none | crop | downscale-lanczos | lanczos-unsharp | <upscaler name> xN[+lanczos]
    facts: dict[str, str]


def nearest_aspect(width: int, height: int, ratios: Sequence[str]) -> str:
    """The ratio "W:H" from `ratios` closest to width/height (in log space, so 2:1 and 1:2 are symmetric)."""
    target = math.log(width / height)

    def distance(ratio: str) -> float:
        w, h = (int(side) for side in ratio.split(":"))
        return abs(math.log(w / h) - target)

    return min(ratios, key=distance)


def crop_size(native: tuple[int, int], width: int, height: int) -> tuple[int, int]:
    """The largest region of `native` with the aspect width:height."""
    left, top, right, bottom = crop_box(native, width, height)
    return right - left, bottom - top


def covers(native: tuple[int, int], width: int, height: int) -> bool:
    """Whether cropping `native` to the target aspect leaves at least the target's pixels."""
    cw, ch = crop_size(native, width, height)
    return cw >= width and ch >= height


def center_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    box = crop_box(image.size, width, height)
    return image if box == (0, 0, *image.size) else image.crop(box)


def upscale_factor(size: tuple[int, int], width: int, height: int, *, max_pixels: int) -> int | None:
    """The smallest factor of 2, 3 or 4 that reaches the target within `max_pixels`, else the
    largest that fits; None when even x2 is too big (the local resample then does it all)."""
    fitting = [f for f in (2, 3, 4) if size[0] * f * size[1] * f <= max_pixels]
    if not fitting:
        return None
    return next((f for f in fitting if size[0] * f >= width and size[1] * f >= height), fitting[-1])


def fit_exact(
    image: Image.Image,
    width: int,
    height: int,
    *,
    upscaler: Upscaler | None = None,
    upscaler_name: str = "upscaler",
    upscaler_max_pixels: int = 17_000_000,
) -> Fitted:
    """`image` cropped and resampled to exactly width x height, and how that was done.

    An upscaler that fails leaves the enlargement to the local resample; the failure is recorded
    in the facts, since the generated image was already paid for."""
    native = image.size
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    cropped = center_crop(rgb, width, height)
    facts: dict[str, str] = {}
    if cropped.size != native:
        facts["crop"] = f"{cropped.width}x{cropped.height}"
    if cropped.size == (width, height):
        return Fitted(cropped, native, "crop" if cropped.size != native else "none", facts)
    if cropped.width >= width and cropped.height >= height:
        resized = cropped.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
        return Fitted(resized, native, "downscale-lanczos", facts)
    method = "lanczos-unsharp"
    if upscaler is not None:
        factor = upscale_factor(cropped.size, width, height, max_pixels=upscaler_max_pixels)
        if factor is not None:
            try:
                enlarged = upscaler(cropped, factor)
            except Exception as error:  # the upscaler is optional polish: fall back, keep the image
                facts["upscaler_error"] = f"{type(error).__name__}: {error}"[:300]
            else:
                enlarged = center_crop(enlarged.convert("RGB"), width, height)
                method = f"{upscaler_name} x{factor}"
                if enlarged.size == (width, height):
                    return Fitted(enlarged, native, method, facts)
                if enlarged.width >= width and enlarged.height >= height:
                    resized = enlarged.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
                    return Fitted(resized, native, method + "+lanczos", facts)
                cropped, method = enlarged, method + "+lanczos-unsharp"
    resized = cropped.resize((width, height), Image.Resampling.LANCZOS).filter(SHARPEN)
    return Fitted(resized, native, method, facts)
