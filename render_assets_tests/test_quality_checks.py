"""QA on real images: generated scenes pass; broken, blank, dark, blurred, placeholder and
duplicate images do not; the score follows the documented formula."""

from __future__ import annotations

import io
import itertools
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from render_assets.domain import failure_images, phash, qa
from render_assets.domain.payload import parse_job
from render_assets.domain.prompt import scene_elements
from render_assets.domain.scene import SceneElement
from render_assets.providers.base import GenerationRequest
from render_assets.providers.local import LocalProvider
from render_assets_tests.payloads import example

ELEMENTS = scene_elements(parse_job(example()))


def scene(
    seed: int = 7, size: tuple[int, int] = (512, 512), elements: tuple[SceneElement, ...] = ELEMENTS
) -> Image.Image:
    request = GenerationRequest(
        prompt="a garden", negative_prompt="", width=size[0], height=size[1], seed=seed, elements=elements
    )
    return LocalProvider().generate(request).image


def encoded(image: Image.Image, image_format: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header (with a valid CRC) claims another size."""
    data = bytearray(encoded(Image.new("RGB", (1, 1), (10, 200, 30))))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# Generated scenes


@pytest.mark.parametrize("size", [(512, 512), (1536, 640), (256, 256), (2048, 2048)])
def test_generated_scenes_pass_with_full_score(size: tuple[int, int]) -> None:
    verdict = qa.check_bytes(encoded(scene(size=size)), size)
    assert (verdict.verdict, verdict.reasons, verdict.score) == ("pass", [], 1.0)
    assert (verdict.width, verdict.height, verdict.format) == (*size, "PNG")
    assert len(verdict.phash) == 16 and verdict.placeholder_distance is not None
    assert verdict.placeholder_distance > qa.PLACEHOLDER_MAX_DISTANCE
    assert set(verdict.measures()) == {
        "score",
        "mean_brightness",
        "contrast",
        "edge_energy",
        "placeholder_distance",
    }


def test_a_jpeg_and_a_webp_pass_and_a_gif_is_refused_by_format() -> None:
    image = scene()
    for image_format in ("JPEG", "WEBP"):
        assert qa.check_bytes(encoded(image, image_format, quality=90), (512, 512)).passed
    verdict = qa.check_bytes(encoded(image, "GIF"), (512, 512))
    assert verdict.verdict == "fail" and verdict.reasons[0] == "format GIF is not one of PNG, JPEG, WEBP"


# Broken images


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(encoded(scene())[:5000], "image does not decode", id="truncated-png"),
        pytest.param(encoded(scene(), "JPEG")[:3000], "image does not decode", id="truncated-jpeg"),
        pytest.param(b"", "image does not decode", id="empty"),
        pytest.param(b"<html>rate limited</html>", "image does not decode", id="an-error-page"),
        pytest.param(claiming(9000, 9000), "9000x9000 exceeds the pixel limit", id="header-claims-81MP"),
        pytest.param(claiming(60_000, 60_000), "image does not decode", id="header-claims-3.6GP"),
    ],
)
def test_broken_images_fail_with_score_zero(data: bytes, reason: str) -> None:
    verdict = qa.check_bytes(data, (512, 512))
    assert (verdict.verdict, verdict.score, verdict.phash) == ("fail", 0.0, "")
    assert len(verdict.reasons) == 1 and reason in verdict.reasons[0]


def test_a_one_pixel_image_fails_on_size_and_blankness() -> None:
    verdict = qa.check_bytes(encoded(Image.new("RGB", (1, 1), (90, 140, 60))), (512, 512))
    assert verdict.verdict == "fail"
    assert verdict.reasons == ["size 1x1 differs from the requested 512x512", "image is blank (contrast 0.0)"]


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (128, 128, 128)])
def test_a_uniform_image_is_blank(colour: tuple[int, int, int]) -> None:
    noisy = np.clip(
        np.full((512, 512, 3), colour, np.int16) + np.random.default_rng(1).integers(-2, 3, (512, 512, 3)), 0, 255
    )
    verdict = qa.check_image(Image.fromarray(noisy.astype(np.uint8)), (512, 512))
    assert verdict.verdict == "fail" and verdict.reasons == [f"image is blank (contrast {verdict.contrast:.1f})"]


# Exposure and detail: the score


def test_a_dark_render_goes_to_review_and_a_nearly_black_one_fails() -> None:
    dim = qa.check_image(ImageEnhance.Brightness(scene()).enhance(0.25), (512, 512))
    assert dim.verdict == "review", dim
    assert dim.reasons == [f"image is too dark (mean brightness {dim.mean_brightness:.1f})"]
    expected = qa.ramp(dim.mean_brightness, *qa.DARK) * qa.ramp(dim.contrast, *qa.CONTRAST)
    assert dim.score == pytest.approx(expected * qa.ramp(dim.edge_energy, *qa.DETAIL), abs=1e-4)
    black = qa.check_image(ImageEnhance.Brightness(scene()).enhance(0.12), (512, 512))
    assert black.verdict == "fail" and black.score < qa.FAIL_BELOW
    assert "image is too dark" in black.reasons[0]


def test_an_overexposed_render_is_too_bright() -> None:
    verdict = qa.check_image(ImageEnhance.Brightness(scene()).enhance(2.2), (512, 512))
    assert verdict.verdict in {"review", "fail"} and verdict.score < qa.REVIEW_BELOW
    assert any(reason.startswith("image is too bright") for reason in verdict.reasons)


def test_a_blurred_render_has_low_detail() -> None:
    verdict = qa.check_image(scene().filter(ImageFilter.GaussianBlur(6)), (512, 512))
    assert verdict.verdict == "fail" and verdict.edge_energy < qa.DETAIL[1]
    assert verdict.reasons == [f"image has low detail (edge energy {verdict.edge_energy:.2f})"]


def test_forced_manual_review_holds_a_good_image() -> None:
    verdict = qa.check_image(scene(), (512, 512), force_review=True)
    assert (verdict.verdict, verdict.score, verdict.reasons) == ("review", 1.0, ["manual review requested"])


def test_ramp_is_linear_between_its_points() -> None:
    assert [qa.ramp(value, 10, 20) for value in (5, 10, 15, 20, 25)] == [0.0, 0.0, 0.5, 1.0, 1.0]


# Provider failure images


def test_the_shipped_failure_images_are_the_built_in_cards() -> None:
    known = {item.name: item.hash for item in failure_images.known_failures()}
    assert set(known) == set(failure_images.BUILT_IN)
    for name, draw in failure_images.BUILT_IN.items():
        assert phash.hamming(known[name], failure_images.hash_of(draw(failure_images.CARD_SIDE))) <= 2


@pytest.mark.parametrize("name", sorted(failure_images.BUILT_IN))
def test_a_provider_placeholder_is_caught_at_another_size_and_encoding(name: str) -> None:
    card = failure_images.BUILT_IN[name](768).convert("RGB")
    data = encoded(card, "JPEG", quality=80)
    verdict = qa.check_bytes(data, (768, 768))
    assert verdict.verdict == "fail" and verdict.placeholder == name
    assert f"image matches the known failure image {name!r}" in verdict.reasons[0]


def test_scenes_are_far_from_every_failure_image() -> None:
    nearest = min(
        failure_images.closest_failure(failure_images.hash_of(scene(seed, elements=elements))).distance  # type: ignore[misc]
        for seed, elements in itertools.product(range(12), (ELEMENTS, ()))
    )
    assert nearest > qa.PLACEHOLDER_MAX_DISTANCE + 5


# Duplicates (the finder is the store's lookup; here a list stands in for earlier renders)


def finder(earlier: dict[str, Image.Image]) -> qa.DuplicateFinder:
    hashes = {render_id: failure_images.hash_of(image) for render_id, image in earlier.items()}

    def find(value: int) -> qa.Duplicate | None:
        near = sorted((phash.hamming(value, stored), render_id) for render_id, stored in hashes.items())
        return qa.Duplicate(near[0][1], near[0][0]) if near else None

    return find


def recoloured(image: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(ImageEnhance.Color(image).enhance(1.15)).enhance(1.06)


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda image: Image.open(io.BytesIO(encoded(image, "JPEG", quality=70))), id="re-encoded"),
        pytest.param(lambda image: image.resize((1000, 1000), Image.Resampling.BICUBIC), id="slightly-resized"),
        pytest.param(recoloured, id="slightly-recoloured"),
    ],
)
def test_a_near_duplicate_is_caught(variant: Any) -> None:
    original = scene(seed=21, size=(1024, 1024))
    copy = variant(original)
    verdict = qa.check_image(copy, copy.size, find_duplicate=finder({"render-earlier": original}))
    assert verdict.verdict == "fail"
    assert verdict.duplicate_of == "render-earlier" and verdict.duplicate_distance is not None
    assert (
        verdict.reasons[-1] == f"image duplicates render render-earlier (pHash distance {verdict.duplicate_distance})"
    )


def test_a_different_scene_is_not_a_duplicate() -> None:
    earlier = {f"render-{seed}": scene(seed=seed) for seed in range(100, 130)}
    verdict = qa.check_image(scene(seed=7), (512, 512), find_duplicate=finder(earlier))
    assert verdict.passed, verdict.reasons
    assert verdict.duplicate_distance is not None and verdict.duplicate_distance > qa.DUPLICATE_MAX_DISTANCE


# pHash bands


def test_hashes_within_three_bits_share_a_band() -> None:
    rng = np.random.default_rng(5)
    for _ in range(500):
        value = int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2))
        flipped = value
        for bit in rng.choice(64, size=3, replace=False):
            flipped ^= 1 << int(bit)
        assert phash.hamming(value, flipped) == 3
        assert any(a == b for a, b in zip(phash.bands(value), phash.bands(flipped), strict=True))


def test_bands_cover_every_bit_once_and_signed_storage_round_trips() -> None:
    assert sorted(itertools.chain.from_iterable(phash.BAND_POSITIONS)) == list(range(64))
    assert phash.bands(0) == (0, 0, 0, 0) and phash.bands(2**64 - 1) == (0xFFFF,) * 4
    for value in (0, 1, 2**63 - 1, 2**63, 2**64 - 1):
        signed = phash.to_signed(value)
        assert -(2**63) <= signed < 2**63 and phash.to_unsigned(signed) == value
