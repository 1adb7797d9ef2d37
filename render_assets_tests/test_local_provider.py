"""The procedural local provider: exact sizes, determinism, a non-trivial scene, errors, latency."""

from __future__ import annotations

import time

import pytest
from PIL import Image, ImageChops, ImageFilter, ImageStat

from render_assets.domain.scene import SceneElement
from render_assets.providers.base import GenerationRequest, ProviderError
from render_assets.providers.local import LocalProvider

GARDEN = (
    SceneElement("plant", "oak tree", 0.2, 0.3, 0.15),
    SceneElement("plant", "lavender shrub", 0.7, 0.6),
    SceneElement("hardscape", "garden path", 0.5, 0.85, 0.2),
    SceneElement("feature", "bench", 0.8, 0.4),
    SceneElement("lighting", "path light", 0.6, 0.5),
    SceneElement("water", "pond", 0.3, 0.55, 0.25),
)


def _request(
    width: int = 512, height: int = 512, seed: int = 7, elements: tuple[SceneElement, ...] = GARDEN
) -> GenerationRequest:
    return GenerationRequest(
        prompt="a calm back garden",
        negative_prompt="",
        width=width,
        height=height,
        seed=seed,
        elements=elements,
    )


def _render(request: GenerationRequest) -> Image.Image:
    return LocalProvider().generate(request).image


def _mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


@pytest.mark.parametrize(("width", "height"), [(1024, 1024), (3840, 2160), (256, 4096)])
def test_exact_size_and_mode(width: int, height: int) -> None:
    result = LocalProvider().generate(_request(width, height))
    assert result.image.size == (width, height)
    assert result.image.mode == "RGB"
    assert result.provider == "local"
    assert result.model == "procedural-v1"
    assert result.cost_estimate_usd == 0.0
    assert result.latency_s > 0
    assert result.facts["seed"] == 7
    assert result.facts["elements_drawn"] == len(GARDEN)


def test_same_request_gives_identical_pixels() -> None:
    assert _render(_request()).tobytes() == _render(_request()).tobytes()


def test_different_seeds_differ_visibly() -> None:
    assert _mean_abs_diff(_render(_request(seed=1)), _render(_request(seed=2))) > 5


@pytest.mark.parametrize("elements", [(), GARDEN])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 12345])
def test_looks_like_a_scene(seed: int, elements: tuple[SceneElement, ...]) -> None:
    stat = ImageStat.Stat(_render(_request(seed=seed, elements=elements)).convert("L"))
    assert 40 < stat.mean[0] < 220
    assert stat.stddev[0] > 12


def test_every_band_has_detail() -> None:
    """No flat region: each horizontal strip carries some edge energy (sky included)."""
    edges = _render(_request(elements=())).convert("L").filter(ImageFilter.FIND_EDGES)
    for top in range(0, 512, 64):
        assert ImageStat.Stat(edges.crop((0, top, 512, top + 64))).mean[0] > 4.0


def test_elements_change_the_image() -> None:
    empty, garden = _render(_request(elements=())), _render(_request())
    assert _mean_abs_diff(empty, garden) > 1


def test_adding_an_element_only_touches_its_neighbourhood() -> None:
    """Texture and the other elements keep their look; only pixels near the new element change."""
    lamp = SceneElement("lighting", "lamp", 0.9, 0.9, 0.1)
    before, after = _render(_request()), _render(_request(elements=(*GARDEN, lamp)))
    changed = ImageChops.difference(before, after).getbbox()
    assert changed is not None
    assert changed[0] > 512 * 0.7
    assert changed[1] > 512 * 0.6


def test_unknown_category_and_out_of_range_positions() -> None:
    odd = (
        SceneElement("sculpture", "abstract thing", 0.5, 0.5),
        SceneElement("plant", "tree", -3.0, 7.5, 2.0),
        SceneElement("water", "pond", 1.5, -0.2, -1.0),
        SceneElement("", "nameless", float("nan"), 0.5),
    )
    result = LocalProvider().generate(_request(elements=odd))
    assert result.image.size == (512, 512)
    assert result.facts["elements_drawn"] == len(odd)
    assert result.facts["generic_markers"] == 2
    assert _mean_abs_diff(result.image, _render(_request(elements=()))) > 0.1


@pytest.mark.parametrize(("width", "height"), [(255, 512), (512, 255), (4097, 1024), (0, 0)])
def test_invalid_size_raises_permanent_error(width: int, height: int) -> None:
    with pytest.raises(ProviderError) as info:
        LocalProvider().generate(_request(width, height))
    assert info.value.transient is False
    assert info.value.provider == "local"
    assert f"{width}x{height}" in str(info.value)


def test_simulated_latency_is_a_floor() -> None:
    start = time.perf_counter()
    result = LocalProvider(latency_s=0.3).generate(_request(256, 256))
    assert time.perf_counter() - start >= 0.3
    assert result.latency_s >= 0.3
