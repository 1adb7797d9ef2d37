"""Prompt building from annotations, the image QA checks, and safe image encoding/decoding."""

from __future__ import annotations

import hashlib
import io
import json
import random
import struct
import unicodedata
import zlib
from typing import Any

import pytest
from PIL import Image

from render_assets.domain import imaging
from render_assets.domain.payload import InvalidJob, RenderJob, parse_job
from render_assets.domain.prompt import build_prompt, scene_elements, seed_for
from render_assets.domain.qa import check_image
from render_assets.providers.base import GenerationRequest
from render_assets.providers.local import LocalProvider
from render_assets_tests.payloads import example, web_app_job


def _job(annotations: list[dict[str, Any]] | None = None, user: str | None = None, **overrides: Any) -> RenderJob:
    data = web_app_job(render_id="render-prompt", **overrides)
    if annotations is not None:
        data["annotations"] = annotations
    if user is not None:
        data["prompt"]["user"] = user
    return parse_job(data)


def _asset(category: Any = "plant", name: Any = "Oak", x: Any = 0.5, y: Any = 0.5, **data: Any) -> dict[str, Any]:
    return {"type": "assetInstance", "data": {"category": category, "name": name, "position": {"x": x, "y": y}, **data}}


def _has_control(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in text)


# Prompt


def test_prompt_is_deterministic() -> None:
    first, second = build_prompt(parse_job(example())), build_prompt(parse_job(json.dumps(example())))
    assert first == second
    assert first.sha256 == hashlib.sha256(first.text.encode()).hexdigest()
    # The seed also depends on the render and the BullMQ attempt; the prompt and its hash do not.
    assert first.seed == seed_for(first.sha256, example()["renderId"], 0)
    retry = build_prompt(parse_job(example()), attempt=1)
    assert (retry.text, retry.sha256) == (first.text, first.sha256) and retry.seed != first.seed
    assert "cozy backyard" in first.text
    assert "plantings of Japanese Maple (Acer palmatum" in first.text
    assert "water features including koi pond" in first.text
    assert 'Design notes: "keep the oak tree".' in first.text
    assert first.negative.startswith("text, watermark")


def test_prompt_changes_with_the_design() -> None:
    base = build_prompt(_job([_asset(name="Oak")]))
    other = build_prompt(_job([_asset(name="Birch")]))
    assert base.text != other.text and base.sha256 != other.sha256


def test_prompt_without_annotations() -> None:
    built = build_prompt(_job([], user=""))
    assert built.text.startswith("A beautiful landscape design. Rendered as ")
    assert "featuring" not in built.text and "notes" not in built.text
    assert built.contributions == {"assetInstance": 0, "textLabel": 0, "mask": 0}


def test_unknown_category_is_described_by_its_name() -> None:
    built = build_prompt(_job([_asset(category="Sculpture", name="Bronze Heron")]))
    assert "sculpture elements including Bronze Heron" in built.text


def test_control_characters_are_removed() -> None:
    user = "a\x01b\x1b[31mc\x7fd\tline\r\nbreak"
    job = _job([_asset(name="Maple\x1b[2J\x07 tree", category="pla\x01nt")], user=user)
    built = build_prompt(job)
    assert not _has_control(built.text)
    assert "a b [31mc d line break" in built.text
    assert "Maple [2J tree" in built.text
    [element] = scene_elements(job)
    assert not _has_control(element.name) and not _has_control(element.category)


def test_c1_control_characters_are_removed() -> None:
    built = build_prompt(_job([_asset(name="Maple\x9b2J")], user="garden\x9b31m"))
    assert not _has_control(built.text)


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        (1e308, -1e308, (1.0, 0.0)),
        (-3, 7e6, (0.0, 1.0)),
        ("left", None, (0.5, 0.5)),
        (True, False, (0.5, 0.5)),
        (512, 384, (0.5, 0.5)),  # pixels on a 1024x768 scene
        (0.25, 0.75, (0.25, 0.75)),
    ],
)
def test_positions_are_clamped_and_normalized(x: Any, y: Any, expected: tuple[float, float]) -> None:
    job = _job([_asset(x=x, y=y, size={"width": -5, "height": 1e300})], resolution="1024x768")
    [element] = scene_elements(job)
    assert (element.x, element.y) == expected
    assert 0.0 <= element.size <= 1.0
    build_prompt(job)


def test_non_finite_positions_are_refused_by_the_payload_before_any_prompt() -> None:
    with pytest.raises(InvalidJob, match=r"annotations\.0\.data"):
        _job([_asset(x=float("nan"), y=float("inf"))])


def test_huge_integer_positions_do_not_crash() -> None:
    data = web_app_job(render_id="render-prompt")
    data["annotations"] = [_asset(x="HUGE")]
    job = parse_job(json.dumps(data).replace('"HUGE"', "1" + "0" * 400))
    [element] = scene_elements(job)
    assert 0.0 <= element.x <= 1.0


def test_contributions_count_each_kind() -> None:
    annotations: list[dict[str, Any]] = [
        {"type": "mask", "data": {"maskId": "m1"}},
        {"type": "mask", "data": {"shape": "rectangle", "x": 0, "y": 0.5, "width": 1, "height": 0.5}},
        _asset(name="Oak"),
        _asset(category="hardscape", name="patio"),
        {"type": "assetInstance", "data": "not an object"},
        {"type": "textLabel", "data": {"text": "keep the shed"}},
        {"type": "textLabel", "data": {"text": " \x01 "}},
        {"type": "textLabel", "data": None},
    ]
    built = build_prompt(_job(annotations))
    assert built.contributions == {"assetInstance": 2, "textLabel": 1, "mask": 2}
    assert 'Design notes: "keep the shed".' in built.text


# QA


def _generated(width: int = 384, height: int = 256) -> Image.Image:
    request = GenerationRequest(prompt="a garden", negative_prompt="", width=width, height=height, seed=11)
    return LocalProvider().generate(request).image


def test_generated_image_passes_qa() -> None:
    verdict = check_image(_generated(), (384, 256))
    assert verdict.passed, verdict.reasons
    assert (verdict.verdict, verdict.reasons, verdict.width, verdict.height) == ("pass", [], 384, 256)
    assert verdict.contrast > 4.0 and 0 < verdict.mean_brightness < 255


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (90, 140, 60)])
def test_uniform_image_fails_as_blank(colour: tuple[int, int, int]) -> None:
    verdict = check_image(Image.new("RGB", (384, 256), colour), (384, 256))
    assert not verdict.passed
    assert len(verdict.reasons) == 1 and "blank" in verdict.reasons[0]


def test_wrong_size_fails_naming_both_sizes() -> None:
    verdict = check_image(_generated(384, 256), (1024, 768))
    assert verdict.verdict == "fail"
    assert verdict.reasons == ["size 384x256 differs from the requested 1024x768"]


# Imaging


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR (with a correct CRC) claims another size: a decompression bomb's header."""
    data = bytearray(_png(1, 1))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP"])
def test_encode_decode_round_trip(image_format: str) -> None:
    source = _generated(320, 272)
    encoded = imaging.encode(source.convert("RGBA"), image_format)
    assert (encoded.format, encoded.width, encoded.height) == (image_format, 320, 272)
    assert encoded.media_type == f"image/{image_format.lower()}"
    assert encoded.extension == {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}[image_format]
    decoded = imaging.decode(encoded.data)
    assert (decoded.size, decoded.format, decoded.mode) == ((320, 272), image_format, "RGB")
    if image_format == "PNG":
        assert decoded.tobytes() == source.tobytes()


def test_fast_png_is_lossless_too() -> None:
    source = _generated(256, 256)
    assert imaging.decode(imaging.encode(source, "PNG", fast=True).data).tobytes() == source.tobytes()


def test_encode_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="unsupported image format 'GIF'"):
        imaging.encode(_generated(256, 256), "GIF")


def test_crafted_header_decodes_as_a_real_png() -> None:
    assert imaging.decode(_claiming(1, 1)).size == (1, 1)


def _noise(image_format: str) -> bytes:
    return imaging.encode(Image.effect_noise((256, 256), 60), image_format).data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(_noise("PNG")[:3000], "truncated", id="truncated-png"),
        pytest.param(_noise("JPEG")[:2000], "truncated", id="truncated-jpeg"),
        pytest.param(_noise("PNG")[:40], "does not decode", id="header-only-png"),
        pytest.param(random.Random(3).randbytes(4096), "does not decode", id="random"),
        pytest.param(b"", "does not decode", id="empty"),
        pytest.param(_claiming(8000, 8000), "8000x8000 exceeds the pixel limit", id="bomb-64MP"),
        pytest.param(_claiming(50_000, 50_000), "decompression bomb", id="bomb-2.5GP"),
    ],
)
def test_decode_rejects_unreadable_images(data: bytes, reason: str) -> None:
    with pytest.raises(imaging.UnreadableImage, match=reason):
        imaging.decode(data)


@pytest.mark.parametrize("size", [(3840, 2160), (256, 4096), (300, 300), (1024, 1024)])
def test_thumbnail_is_a_centre_cropped_square(size: tuple[int, int]) -> None:
    width, height = size
    side = min(size)
    image = Image.new("RGB", size, (200, 30, 30))
    # Only the centred square is green: a cover crop keeps none of the red margin.
    image.paste((30, 200, 30), ((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2))
    thumb = imaging.thumbnail(image)
    assert (thumb.size, thumb.mode) == ((300, 300), "RGB")
    for corner in [(0, 0), (299, 0), (0, 299), (299, 299), (150, 150)]:
        pixel = thumb.getpixel(corner)
        assert isinstance(pixel, tuple)
        assert pixel[1] > 150 and pixel[0] < 80, (corner, pixel)
