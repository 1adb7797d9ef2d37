"""Framing: the domain's centre crop is the one providers/fitting.py makes, and a provider's own
frame is retraced through two crops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from render_assets.domain.framing import crop_box, fit_to, frame_box
from render_assets.providers import fitting

SIZES = [(256, 256), (1024, 768), (768, 1024), (1536, 1024), (1000, 667), (4096, 256), (257, 4095), (999, 1001)]


@pytest.mark.parametrize(("native", "target"), list(itertools.product(SIZES, SIZES)))
def test_crop_box_is_the_crop_fitting_makes(native: tuple[int, int], target: tuple[int, int]) -> None:
    # Each pixel holds its own index, so the crop's first pixel says where the crop started.
    ys, xs = np.mgrid[0 : native[1], 0 : native[0]]
    indexed = Image.fromarray((ys * native[0] + xs).astype(np.int32), "I")
    cropped = fitting.center_crop(indexed, *target)
    first = int(np.asarray(cropped)[0, 0])
    left, top, right, bottom = crop_box(native, *target)
    assert (left, top) == (first % native[0], first // native[0])
    assert (right - left, bottom - top) == cropped.size == fitting.crop_size(native, *target)


def test_without_a_frame_of_its_own_the_box_is_the_crop() -> None:
    assert frame_box((800, 600), (1600, 900)) == (0.0, 75.0, 800.0, 525.0)
    assert frame_box((800, 600), (400, 300)) == (0.0, 0.0, 800.0, 600.0)


def test_a_provider_frame_is_two_crops_in_one_box() -> None:
    # 4:3 photo, square native frame (100 px cut off each side), then 3:2 of the square.
    left, top, right, bottom = frame_box((800, 600), (1536, 1024), through=(1024, 1024))
    assert (left, right) == (100.0, 700.0)
    assert (top, bottom) == pytest.approx((100.0, 500.0), abs=0.5)


def test_fit_to_reaches_exactly_the_size() -> None:
    image = Image.new("RGB", (999, 1001), "green")
    for size in [(256, 256), (4096, 256), (1000, 1000)]:
        fitted = fit_to(image, size, Image.Resampling.LANCZOS)
        assert fitted.size == size
        assert np.asarray(fitted).reshape(-1, 3).min(axis=0).tolist() == [0, 128, 0]
