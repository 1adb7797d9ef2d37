"""Where a delivered render's pixels come from in the customer's photo.

A provider's image reaches the requested size by a centre crop to the requested aspect
(`crop_box`, which `providers/fitting.py` crops with), then a resample. A provider that edits
the photo frames it first in its own native size, cover-cropped about the centre as the local
renderer does. Putting the photo, or its mask, through the same two crops lands each of its
pixels where the generated image has the same place of the yard.

Its own module rather than `imaging.py`, whose source is part of `cdn_image`'s code version.
"""

from __future__ import annotations

from PIL import Image

Size = tuple[int, int]
Box = tuple[float, float, float, float]


def crop_box(size: Size, width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centred region of `size` with the aspect width:height, as fitting crops it."""
    sw, sh = size
    if sw * height > sh * width:  # too wide: keep the full height
        cw, ch = max(1, round(sh * width / height)), sh
    else:
        cw, ch = sw, max(1, round(sw * height / width))
    left, top = (sw - cw) // 2, (sh - ch) // 2
    return left, top, left + cw, top + ch


def frame_box(source: Size, size: Size, through: Size | None = None) -> Box:
    """The region of an image of `source` size that ends up as an output of `size`.

    `through`: the provider's native size, when it framed the image in that before its output
    was cropped to `size`; None when the output's own aspect framed it."""
    left, top, right, bottom = crop_box(source, *(through or size))
    if through is None:
        return float(left), float(top), float(right), float(bottom)
    # The native frame's own crop, mapped back onto the source (float: the frames differ in scale).
    scale_x, scale_y = (right - left) / through[0], (bottom - top) / through[1]
    inner = crop_box(through, *size)
    return (
        left + inner[0] * scale_x,
        top + inner[1] * scale_y,
        left + inner[2] * scale_x,
        top + inner[3] * scale_y,
    )


def fit_to(image: Image.Image, size: Size, resample: Image.Resampling, *, through: Size | None = None) -> Image.Image:
    """`image` cropped and resampled to exactly `size` the way the generated image was.

    One resize with a source box: no full-size copy of the crop on the way."""
    return image.resize(size, resample, box=frame_box(image.size, size, through), reducing_gap=3.0)
