"""Style templates and environment factors of a prompt, and how a job picks them.

The payload has no style field (its model is the web app's, shared and strict), so the style
comes from the user's prompt: the first style keyword it mentions picks the template
("a modern drought-tolerant front yard" is `modern`), and `landscape` is the default.
Environment factors (lighting, season, time of day, weather, camera angle) start from the
template; a factor the user names from a fixed vocabulary ("at dusk", "in winter", "aerial
view") replaces the template's value with our own phrase for it. User words never enter these
parts of the prompt: only the phrases in this module do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

DEFAULT_STYLE = "landscape"


@dataclass(frozen=True)
class Environment:
    lighting: str
    season: str
    time_of_day: str
    weather: str
    camera_angle: str

    def phrase(self) -> str:
        return f"{self.lighting}, {self.season}, at {self.time_of_day}, {self.weather}, {self.camera_angle}"


@dataclass(frozen=True)
class StyleTemplate:
    name: str
    base: str
    style: str
    quality: str
    environment: Environment
    negative: str  # what this style must not look like, added to the common negative prompt
    keywords: tuple[str, ...]


TEMPLATES: dict[str, StyleTemplate] = {
    template.name: template
    for template in (
        StyleTemplate(
            name="landscape",
            base="A beautiful landscape design featuring",
            style="professional landscape architecture visualization",
            quality="high resolution, detailed, photorealistic",
            environment=Environment(
                "natural daylight, soft shadows",
                "lush green spring",
                "golden hour",
                "clear sky",
                "elevated perspective at 45 degrees",
            ),
            negative="barren ground, dead plants",
            keywords=("landscape",),
        ),
        StyleTemplate(
            name="modern",
            base="A modern contemporary landscape design with",
            style="sleek minimalist landscape architecture",
            quality="sharp details, architectural rendering quality",
            environment=Environment(
                "dramatic architectural lighting",
                "evergreen plantings",
                "dusk with accent lighting",
                "clear conditions",
                "wide angle architectural view",
            ),
            negative="clutter, ornate decoration, rustic props",
            keywords=("modern", "contemporary", "minimalist", "minimal"),
        ),
        StyleTemplate(
            name="traditional",
            base="A traditional garden landscape featuring",
            style="classic English garden style",
            quality="rich colors, detailed textures",
            environment=Environment(
                "soft morning light",
                "blooming summer garden",
                "mid-morning",
                "partly cloudy",
                "garden perspective view",
            ),
            negative="stark minimalism, concrete expanses",
            keywords=("traditional", "english garden", "cottage", "classic", "formal garden"),
        ),
        StyleTemplate(
            name="xeriscape",
            base="A water-wise xeriscape design featuring",
            style="drought-tolerant landscape design",
            quality="crisp details, natural textures",
            environment=Environment(
                "bright desert sunlight",
                "year-round interest",
                "midday",
                "sunny and dry",
                "showcase view of the design",
            ),
            negative="lush lawn, tropical foliage, standing water",
            keywords=("xeriscape", "drought", "water-wise", "water wise", "desert", "succulent", "arid"),
        ),
        StyleTemplate(
            name="japanese",
            base="A serene Japanese-inspired garden with",
            style="zen garden aesthetic, minimalist design",
            quality="tranquil atmosphere, refined details",
            environment=Environment(
                "filtered light through trees",
                "autumn colors",
                "early morning",
                "misty atmosphere",
                "contemplative viewing angle",
            ),
            negative="bright saturated colors, clutter, lawn ornaments",
            keywords=("japanese", "zen", "tea garden", "karesansui"),
        ),
    )
}

# Fixed vocabularies: a keyword the user mentions → our phrase for that factor.
SEASONS: tuple[tuple[str, str], ...] = (
    ("spring", "fresh spring growth and blossoms"),
    ("summer", "full summer foliage"),
    ("autumn", "autumn colors"),
    ("fall", "autumn colors"),
    ("winter", "winter dormancy with evergreen structure"),
)
TIMES_OF_DAY: tuple[tuple[str, str, str], ...] = (
    # keyword, time of day, the lighting that goes with it
    ("sunrise", "sunrise", "warm low sunlight with long soft shadows"),
    ("dawn", "dawn", "cool soft light before sunrise"),
    ("morning", "morning", "soft morning light"),
    ("midday", "midday", "bright overhead sunlight"),
    ("noon", "midday", "bright overhead sunlight"),
    ("afternoon", "afternoon", "warm afternoon light"),
    ("golden hour", "golden hour", "warm golden light with long shadows"),
    ("sunset", "sunset", "warm golden light with long shadows"),
    ("dusk", "dusk", "twilight sky with warm landscape lighting glowing"),
    ("twilight", "dusk", "twilight sky with warm landscape lighting glowing"),
    ("evening", "evening", "fading daylight with landscape lighting on"),
    ("night", "night", "dark sky with landscape lighting illuminating the garden"),
)
WEATHER: tuple[tuple[str, str], ...] = (
    ("sunny", "sunny clear sky"),
    ("overcast", "overcast soft diffuse sky"),
    ("cloudy", "overcast soft diffuse sky"),
    ("misty", "misty atmosphere"),
    ("foggy", "misty atmosphere"),
    ("rain", "just after rain with wet glistening surfaces"),
    ("snow", "light snow cover"),
)
CAMERA_ANGLES: tuple[tuple[str, str], ...] = (
    ("aerial", "aerial bird's-eye view"),
    ("bird's-eye", "aerial bird's-eye view"),
    ("birds eye", "aerial bird's-eye view"),
    ("top-down", "top-down plan view"),
    ("eye level", "eye-level view"),
    ("eye-level", "eye-level view"),
    ("street view", "view from the street"),
    ("close-up", "close-up garden perspective"),
    ("wide angle", "wide angle view"),
)


@dataclass(frozen=True)
class StyleChoice:
    template: StyleTemplate
    environment: Environment
    overridden: tuple[str, ...]  # the environment factors the user's words chose


def _position(text: str, keyword: str) -> int | None:
    match = re.search(rf"(?<![a-z0-9]){re.escape(keyword)}(?![a-z0-9])", text)
    return match.start() if match else None


def _first(text: str, table: Sequence[tuple[str, ...]]) -> int | None:
    """The row of `table` whose keyword (first column) the text mentions first; at one position,
    the longer keyword wins ("golden hour" over a shorter one starting there)."""
    found = [
        (position, -len(row[0]), index)
        for index, row in enumerate(table)
        if (position := _position(text, row[0])) is not None
    ]
    return min(found)[2] if found else None


STYLE_KEYWORDS: tuple[tuple[str, str], ...] = tuple(
    (keyword, name) for name, template in TEMPLATES.items() for keyword in template.keywords
)


def choose(user_text: str) -> StyleChoice:
    """The template and environment for a (sanitized) user prompt."""
    text = user_text.lower()
    picked = _first(text, STYLE_KEYWORDS)
    template = TEMPLATES[STYLE_KEYWORDS[picked][1] if picked is not None else DEFAULT_STYLE]
    overrides: dict[str, str] = {}
    if (row := _first(text, SEASONS)) is not None:
        overrides["season"] = SEASONS[row][1]
    if (row := _first(text, TIMES_OF_DAY)) is not None:
        overrides["time_of_day"], overrides["lighting"] = TIMES_OF_DAY[row][1], TIMES_OF_DAY[row][2]
    if (row := _first(text, WEATHER)) is not None:
        overrides["weather"] = WEATHER[row][1]
    if (row := _first(text, CAMERA_ANGLES)) is not None:
        overrides["camera_angle"] = CAMERA_ANGLES[row][1]
    environment = replace(template.environment, **overrides)
    return StyleChoice(template, environment, tuple(sorted(overrides)))
