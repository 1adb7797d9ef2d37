"""True 4K: native sizes the providers accept, centre-crop and resample to exactly the request."""

from __future__ import annotations

import pytest
from PIL import Image

from render_assets.providers import google_image, openai_image
from render_assets.providers.fitting import (
    center_crop,
    covers,
    fit_exact,
    nearest_aspect,
    upscale_factor,
)
from render_assets_tests.fakes.image_apis import picture
from render_assets_tests.fakes.providers import difference

SIZES = [(4096, 4096), (3840, 2160), (2160, 3840), (1536, 640), (256, 4096), (4096, 256), (1000, 999), (256, 256)]


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_openai_sizes_obey_the_api_rules(width: int, height: int) -> None:
    w, h = openai_image.native_size(width, height)
    assert w % 16 == 0 and h % 16 == 0
    assert 1 / 3 <= w / h <= 3
    assert w * h <= 3840 * 2160 and max(w, h) <= 3840
    assert w * h >= 1024 * 1024 * 0.9  # small requests are still generated at about 1 MP


def test_openai_takes_4k_uhd_natively_and_squares_within_the_pixel_limit() -> None:
    assert openai_image.native_size(3840, 2160) == (3840, 2160)
    assert openai_image.native_size(4096, 4096) == (2880, 2880)


@pytest.mark.parametrize(
    ("width", "height", "plan"),
    [
        (4096, 4096, ("1:1", "4K")),
        (3840, 2160, ("16:9", "4K")),
        (1024, 1024, ("1:1", "1K")),
        (2048, 1536, ("4:3", "2K")),
    ],
)
def test_gemini_plans_the_smallest_native_tier_that_covers_the_request(
    width: int, height: int, plan: tuple[str, str]
) -> None:
    assert google_image.gemini_plan(width, height) == plan


def test_imagen_asks_for_2k_when_1k_is_too_small_and_never_more() -> None:
    assert google_image.imagen_plan(1024, 1024)[:2] == ("1:1", "1K")
    assert google_image.imagen_plan(4096, 4096)[:2] == ("1:1", "2K")
    assert google_image.imagen_plan(3840, 2160)[:2] == ("16:9", "2K")


def test_nearest_aspect_is_symmetric_in_log_space() -> None:
    ratios = ("1:1", "16:9", "9:16", "4:3", "3:4")
    assert nearest_aspect(3840, 2160, ratios) == "16:9"
    assert nearest_aspect(2160, 3840, ratios) == "9:16"
    assert nearest_aspect(4096, 256, ratios) == "16:9"
    assert nearest_aspect(1000, 999, ratios) == "1:1"


@pytest.mark.parametrize(
    ("native", "target"),
    [
        ((5504, 3072), (3840, 2160)),
        ((1024, 1024), (3840, 2160)),
        ((2816, 1536), (4096, 4096)),
        ((1408, 768), (256, 4096)),
    ],
)
def test_center_crop_keeps_the_middle_at_the_target_aspect(native: tuple[int, int], target: tuple[int, int]) -> None:
    cropped = center_crop(Image.new("RGB", native), *target)
    assert abs(cropped.width / cropped.height - target[0] / target[1]) < 0.01
    assert cropped.width == native[0] or cropped.height == native[1]


@pytest.mark.parametrize(("native", "target", "method"), [
    ((4096, 4096), (4096, 4096), "none"),
    ((5456, 3072), (5456, 3069), "crop"),
    ((5456, 3072), (3840, 2160), "downscale-lanczos"),
    ((2880, 2880), (4096, 4096), "lanczos-unsharp"),
    ((704, 384), (1920, 1080), "lanczos-unsharp"),
])  # fmt: skip
def test_fit_exact_delivers_exactly_the_requested_size(
    native: tuple[int, int], target: tuple[int, int], method: str
) -> None:
    source = picture(*native, (200, 80, 40))
    fitted = fit_exact(source, *target)
    assert fitted.image.size == target
    assert fitted.native_size == native
    assert fitted.method == method
    assert difference(fitted.image, center_crop(source, *target)) < 4  # the content, not a blank canvas


def test_an_upscaler_gets_the_cropped_image_and_the_smallest_sufficient_factor() -> None:
    calls: list[tuple[tuple[int, int], int]] = []

    def upscaler(image: Image.Image, factor: int) -> Image.Image:
        calls.append((image.size, factor))
        return image.resize((image.width * factor, image.height * factor))

    source = picture(2816, 1536, (60, 160, 70))
    fitted = fit_exact(source, 3840, 2160, upscaler=upscaler, upscaler_name="google:up")
    assert calls == [((2731, 1536), 2)]
    assert fitted.image.size == (3840, 2160)
    assert fitted.method == "google:up x2+lanczos"
    assert difference(fitted.image, center_crop(source, 3840, 2160)) < 4


def test_a_failing_upscaler_falls_back_to_the_local_resample_and_says_so() -> None:
    def broken(image: Image.Image, factor: int) -> Image.Image:
        raise TimeoutError("upscaler took too long")

    fitted = fit_exact(picture(512, 512, (1, 2, 3)), 1024, 1024, upscaler=broken, upscaler_name="google:up")
    assert fitted.image.size == (1024, 1024)
    assert fitted.method == "lanczos-unsharp"
    assert "TimeoutError" in fitted.facts["upscaler_error"]


def test_upscale_factor_respects_the_17_megapixel_output_limit() -> None:
    assert upscale_factor((1024, 1024), 4096, 4096, max_pixels=17_000_000) == 4
    assert upscale_factor((2048, 2048), 4096, 4096, max_pixels=17_000_000) == 2
    assert upscale_factor((1408, 768), 3840, 2160, max_pixels=17_000_000) == 3  # x4 would be 17.3 MP
    assert upscale_factor((3000, 3000), 4096, 4096, max_pixels=17_000_000) is None
    assert covers((4096, 2304), 3840, 2160) and not covers((2048, 1152), 3840, 2160)
