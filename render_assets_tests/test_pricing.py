"""`render_cost`: the web app's credit table."""

from __future__ import annotations

import pytest

from render_assets.domain.payload import RenderSettings
from render_assets.domain.pricing import render_cost


def _settings(resolution: str, quality: int | None = None) -> RenderSettings:
    return RenderSettings(provider="google-imagen", resolution=resolution, format="PNG", quality=quality)


@pytest.mark.parametrize(
    ("resolution", "quality", "cost"),
    [
        ("1024x1024", None, 1),  # exactly 1024x1024 is not above it
        ("1000x1000", 100, 2),
        ("1025x1024", None, 2),  # just above 1024x1024
        ("2048x2048", None, 2),  # exactly 2048x2048 is not above it
        ("2049x2048", None, 4),  # above 2048x2048: 1 + 1 + 2
        ("3840x2160", None, 4),
        ("4096x4096", 100, 5),
        ("256x256", 1, 1),
        ("1000x1000", 75, 1),  # quality 75 earns no bonus
        ("1000x1000", 76, 2),  # quality 76 does
        ("4096x4096", 75, 4),
        ("4096x4096", 76, 5),
    ],
)
def test_render_cost(resolution: str, quality: int | None, cost: int) -> None:
    assert render_cost(_settings(resolution, quality)) == cost


@pytest.mark.parametrize(("quality", "cost"), [(None, 1), (80, 2)])
def test_1024_square_is_the_one_credit_render(quality: int | None, cost: int) -> None:
    assert render_cost(_settings("1024x1024", quality)) == cost
