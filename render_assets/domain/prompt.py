"""Design annotations → the text prompt (and negative prompt) sent to an image provider.

Every annotation kind counts and any subset works, including none: `assetInstance` items are
described by category (plants placed in the foreground, midground or background by their
normalized position and enriched from the plant catalogue; hardscape, features, lighting and
water with their attributes; unknown categories by name), `textLabel` notes are quoted as design
notes, and masks are counted. Empty groups and areas produce no words.

The prompt reads, in this order: the style template's opening and the description; the user's
brief and notes, sanitized and quoted; then the fixed parts (style, environment, quality,
technical phrases), which come from our templates only, so nothing the user writes can replace
them, and the negative prompt is a separate field built from fixed phrases alone. Variable
parts are capped so the whole stays within Imagen's 480-token prompt limit.

With a mask (`maskImageUrl` or drawn shapes), the design is for the marked area: only the
elements placed inside drawn shapes are described (the others stand on the kept part of the
photo), and a fixed sentence asks for the photo's light and perspective.

Deterministic: the same payload gives the same text and sha256 (the hash covers the text, and
the mask when there is one, so it does not change between BullMQ attempts); the seed also
depends on the render id and the attempt, so each attempt draws a new image.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

from render_assets.domain.fingerprints import digest, logic_digest
from render_assets.domain.payload import Annotation, RenderJob
from render_assets.domain.plant_catalogue import Plant, builtin
from render_assets.domain.prompt_styles import DEFAULT_STYLE, StyleChoice, choose
from render_assets.domain.scene import SceneElement

NEGATIVE_PROMPT = (
    "text, watermark, logo, signature, people, cartoon style, anime style, illustration, painting, "
    "blurry, distorted perspective, deformed plants, low resolution"
)
TECHNICAL = (
    "proper perspective, accurate scale, realistic proportions, natural lighting and shadows, "
    "depth of field, atmospheric perspective"
)
QUALITY_PRESETS: dict[str, str] = {
    "low": "simple clean rendering, clear forms",
    "medium": "detailed clear rendering, natural textures",
    "high": "high quality rendering, fine details, professional visualization, photorealistic textures",
    "ultra": "ultra detailed, 8K resolution, ray-traced lighting, photorealistic textures, sharp focus",
}
# For a job with a mask: the design is for the marked area of the customer's photo only.
MASKED_AREA = (
    "This design is for the marked area of the photo only; it matches the photo's light, "
    "shadows and perspective, and everything outside the marked area stays as in the photo."
)
CATEGORY_ORDER = ("plant", "hardscape", "feature", "lighting", "water")
AREAS = ("foreground", "midground", "background")
# C0 and C1 control characters, and Unicode format characters (bidi overrides, zero-width).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+")
# Phrases that address the generator rather than describe a garden; dropped from user text.
_DIRECTIVES = re.compile(
    r"\b(?:negative\s+prompt|system\s+prompt|ignore\s+(?:all\s+|any\s+|the\s+)?"
    r"(?:previous|above|prior|earlier|preceding)(?:\s+\w+)?)\s*:?",
    re.IGNORECASE,
)
_NOT_ATTRIBUTE = re.compile(r"[^A-Za-z0-9 '&-]+")
_NOT_CATEGORY = re.compile(r"[^a-z ]+")
MAX_NAME_CHARS = 80
MAX_ATTRIBUTE_CHARS = 40
MAX_USER_CHARS = 300
MAX_NOTES, MAX_NOTE_CHARS = 3, 80
MAX_NAMES_PER_GROUP = 8
MAX_DESCRIPTION_CHARS = 800
SIZE_KEYS = ("sceneSize", "canvasSize")  # optional size of the canvas pixel positions refer to


@dataclass(frozen=True)
class BuiltPrompt:
    text: str
    negative: str
    sha256: str
    seed: int
    contributions: dict[str, int] = field(default_factory=dict)  # annotations used, by kind
    style: str = DEFAULT_STYLE
    quality_level: str = "high"
    categories: dict[str, int] = field(default_factory=dict)  # placed elements, by category
    plants_matched: int = 0  # plants found in the catalogue
    environment_overrides: list[str] = field(default_factory=list)  # factors the user's words chose
    attempt: int = 0  # the BullMQ attempt the seed was drawn for

    @property
    def version(self) -> str:
        """What an image depends on (prompt, negative prompt, seed): `render_prompt`'s data version."""
        return digest([self.text, self.negative, self.seed])


@dataclass(frozen=True)
class _Placed:
    element: SceneElement
    attributes: dict[str, str]


def clean_text(value: Any, limit: int) -> str:
    """Collapse control characters and whitespace, and cap the length."""
    text = _CONTROL.sub(" ", str(value)) if value is not None else ""
    return " ".join(text.split())[:limit]


def user_text(value: Any, limit: int) -> str:
    """User words for the quoted parts: clean, no directives, no double quotes (which would close
    the quotation), cut at a word boundary."""
    text = clean_text(_DIRECTIVES.sub(" ", clean_text(value, limit * 2)).replace('"', "'"), limit * 2)
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return text.strip(" ,;:")


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return default
    return number if math.isfinite(number) else default


def _normalized(value: float, extent: float) -> float:
    """Positions may be normalized already (0..1) or in pixels of the scene."""
    if value > 1.0:
        value = value / extent
    return min(max(value, 0.0), 1.0)


def _scene_size(data: dict[str, Any], default: tuple[int, int]) -> tuple[float, float]:
    """The canvas pixel positions refer to: the annotation's own when it says, else the render's."""
    for key in SIZE_KEYS:
        size = data.get(key)
        if isinstance(size, dict):
            width, height = _number(size.get("width"), 0.0), _number(size.get("height"), 0.0)
            if width >= 1 and height >= 1:
                return width, height
    return float(default[0]), float(default[1])


def _attributes(data: dict[str, Any]) -> dict[str, str]:
    """Short descriptive attributes (material, pattern, style, type, placement, flow), from the
    item or its `attributes` object; letters, digits and a little punctuation only."""
    nested = data.get("attributes") if isinstance(data.get("attributes"), dict) else {}
    assert isinstance(nested, dict)
    found = {}
    for key in ("material", "pattern", "style", "type", "placement", "flow"):
        value = data.get(key, nested.get(key))
        if isinstance(value, str):
            text = " ".join(_NOT_ATTRIBUTE.sub(" ", clean_text(value, MAX_ATTRIBUTE_CHARS * 2)).split())
            if text:
                found[key] = text[:MAX_ATTRIBUTE_CHARS].strip()
    return found


def _placed(job: RenderJob) -> list[_Placed]:
    placed = []
    for annotation in job.annotations:
        if annotation.type != "assetInstance" or not isinstance(annotation.data, dict):
            continue
        data = annotation.data
        position = data.get("position") if isinstance(data.get("position"), dict) else {}
        size = data.get("size") if isinstance(data.get("size"), dict) else {}
        assert isinstance(position, dict) and isinstance(size, dict)
        width, height = _scene_size(data, job.settings.size)
        extent = max(_number(size.get("width"), 0.1), _number(size.get("height"), 0.1))
        element = SceneElement(
            category=clean_text(data.get("category") or "plant", 32).lower(),
            name=clean_text(data.get("name") or "element", MAX_NAME_CHARS),
            x=_normalized(_number(position.get("x"), 0.5), width),
            y=_normalized(_number(position.get("y"), 0.5), height),
            size=_normalized(extent, min(width, height)) if extent > 1 else max(extent, 0.02),
        )
        placed.append(_Placed(element, _attributes(data)))
    return placed


def scene_elements(job: RenderJob) -> tuple[SceneElement, ...]:
    """The placed design elements (assetInstance annotations), as a renderer needs them."""
    return tuple(item.element for item in _placed(job))


def area_of(y: float) -> str:
    """Depth from the normalized vertical position: the bottom of the picture is nearest."""
    return "foreground" if y > 0.7 else "midground" if y > 0.3 else "background"


def _counted(names: list[str]) -> str:
    """Names in first-seen order, repeats counted ("3 Common Boxwood"), long lists shortened."""
    counts = Counter(names)
    ordered = list(dict.fromkeys(names))
    shown = [name if counts[name] == 1 else f"{counts[name]} {name}" for name in ordered[:MAX_NAMES_PER_GROUP]]
    more = len(ordered) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _plant_name(plant: Plant | None, name: str) -> str:
    return f"{plant.common} ({plant.scientific}, {plant.traits})" if plant else name


def _describe_item(category: str, item: _Placed) -> str:
    name, attributes = item.element.name, item.attributes
    if category == "hardscape":
        text = name + (f" made of {attributes['material']}" if "material" in attributes else "")
        return text + (f" in a {attributes['pattern']} pattern" if "pattern" in attributes else "")
    if category == "feature":
        return f"{attributes['style']} {name}" if "style" in attributes else name
    if category == "lighting":
        details = [f"{attributes[key]} {key}" for key in ("type", "placement") if key in attributes]
        return f"{name} ({', '.join(details)})" if details else name
    if category == "water":
        return name + (f" with {attributes['flow']} water movement" if "flow" in attributes else "")
    return name


GROUP_PHRASES = {
    "hardscape": "hardscape elements including",
    "feature": "landscape features including",
    "lighting": "landscape lighting with",
    "water": "water features including",
}


def _description(placed: list[_Placed]) -> tuple[str, int]:
    """The elements as prose, and how many plants the catalogue knew."""
    by_category: dict[str, list[_Placed]] = {}
    for item in placed:
        by_category.setdefault(item.element.category, []).append(item)
    parts: list[str] = []
    matched = 0
    catalogue = builtin()
    plants_by_area: dict[str, list[str]] = {area: [] for area in AREAS}
    for item in by_category.get("plant", []):
        plant = catalogue.find(item.element.name)
        matched += plant is not None
        plants_by_area[area_of(item.element.y)].append(_plant_name(plant, item.element.name))
    placed_areas = [f"{_counted(names)} in the {area}" for area, names in plants_by_area.items() if names]
    if placed_areas:
        joined = ", ".join(placed_areas[:-1]) + " and " + placed_areas[-1] if len(placed_areas) > 1 else placed_areas[0]
        parts.append(f"plantings of {joined}")
    unknown = sorted(category for category in by_category if category not in CATEGORY_ORDER)
    for category in [*CATEGORY_ORDER[1:], *unknown]:
        items = by_category.get(category)
        if not items:
            continue
        label = " ".join(_NOT_CATEGORY.sub(" ", category).split()) or "other"
        phrase = GROUP_PHRASES.get(category, f"{label} elements including")
        parts.append(f"{phrase} {_counted([_describe_item(category, item) for item in items])}")
    text = "; ".join(parts)
    if len(text) > MAX_DESCRIPTION_CHARS:
        text = text[:MAX_DESCRIPTION_CHARS].rsplit(", ", 1)[0] + " and more"
    return text, matched


def _notes(annotations: list[Annotation]) -> list[str]:
    notes = []
    for annotation in annotations:
        if annotation.type == "textLabel" and isinstance(annotation.data, dict):
            note = user_text(annotation.data.get("text"), MAX_NOTE_CHARS)
            if note:
                notes.append(note)
    return notes


def quality_level(quality: int | None) -> str:
    """The web app's mapping: missing → high; ≤25 low; ≤50 medium; ≤75 high; above → ultra."""
    if quality is None:
        return "high"
    return "low" if quality <= 25 else "medium" if quality <= 50 else "high" if quality <= 75 else "ultra"


def seed_for(prompt_sha256: str, render_id: str, attempt: int) -> int:
    """31 bits (every provider's seed field takes them), new for each render and attempt."""
    digest = hashlib.sha256(f"{prompt_sha256}:{render_id}:{attempt}".encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def _opening(choice: StyleChoice, description: str) -> str:
    base = choice.template.base
    if description:
        return f"{base} {description}."
    # "A beautiful landscape design featuring" → "A beautiful landscape design."
    return base.rsplit(" ", 1)[0] + "."


def _marked(job: RenderJob, placed: list[_Placed]) -> list[_Placed]:
    """With drawn mask shapes, the elements placed inside the marked area: those outside it stand
    on the part of the photo that is kept, so describing them would have them painted inside."""
    shapes = job.mask_shapes()
    if not shapes:
        return placed
    return [item for item in placed if any(shape.contains(item.element.x, item.element.y) for shape in shapes)]


def _mask_key(job: RenderJob) -> str:
    """What the prompt hash adds for a job with a mask: the image is made for that marked area."""
    if job.maskImageUrl is not None:
        return f"maskImageUrl:{job.maskImageUrl}"
    return "mask:" + json.dumps([shape.model_dump(mode="json") for shape in job.mask_shapes()], sort_keys=True)


def build_prompt(job: RenderJob, *, attempt: int = 0) -> BuiltPrompt:
    placed = _marked(job, _placed(job))
    description, matched = _description(placed)
    brief = user_text(job.prompt.user, MAX_USER_CHARS)
    notes = _notes(job.annotations)
    choice = choose(brief)
    level = quality_level(job.settings.quality)
    sentences = [_opening(choice, description)]
    if job.has_mask():
        sentences.append(MASKED_AREA)
    if brief:
        sentences.append(f'Client brief: "{brief}".')
    if notes:
        sentences.append("Design notes: " + "; ".join(f'"{note}"' for note in notes[:MAX_NOTES]) + ".")
    sentences += [
        f"Rendered as {choice.template.style}, {choice.environment.phrase()}.",
        f"{QUALITY_PRESETS[level]}, {choice.template.quality}.",
        f"{TECHNICAL}.",
    ]
    text = " ".join(sentence[0].upper() + sentence[1:] for sentence in sentences)
    hashed = f"{text}\n{_mask_key(job)}" if job.has_mask() else text
    digest = hashlib.sha256(hashed.encode()).hexdigest()
    contributions = {
        "assetInstance": len(placed),
        "textLabel": len(notes),
        "mask": sum(1 for annotation in job.annotations if annotation.type == "mask"),
    }
    return BuiltPrompt(
        text=text,
        negative=f"{NEGATIVE_PROMPT}, {choice.template.negative}",
        sha256=digest,
        seed=seed_for(digest, job.renderId, attempt),
        contributions=contributions,
        style=choice.template.name,
        quality_level=level,
        categories=dict(sorted(Counter(item.element.category for item in placed).items())),
        plants_matched=matched,
        environment_overrides=list(choice.overridden),
        attempt=attempt,
    )


@dataclass(frozen=True)
class PromptRules:
    """What the current prompt rules make of a design, for lineage: `version` changes exactly when
    the prompt they build for it would (Dagster compares it with the version a render was made
    from), and `parts` are the digests of the rules it used, to name what changed."""

    version: str  # "<style>-<digest of the prompt and negative prompt>"
    parts: dict[str, str]


def prompt_rules(job: RenderJob) -> PromptRules:
    built = build_prompt(job)
    choice = choose(user_text(job.prompt.user, MAX_USER_CHARS))
    catalogue = builtin()
    plant_names = sorted({item.element.name for item in _placed(job) if item.element.category == "plant"})
    template = {name: value for name, value in asdict(choice.template).items() if name != "keywords"}
    parts = {
        "style": choice.template.name,
        "template": digest(template),
        "environment": digest(choice.environment),
        "quality": digest([built.quality_level, QUALITY_PRESETS[built.quality_level]]),
        "plants": digest({name: catalogue.find(name) for name in plant_names}),
        "phrases": digest([NEGATIVE_PROMPT, TECHNICAL, GROUP_PHRASES]),
        "builder": builder_digest(),
    }
    return PromptRules(version=f"{choice.template.name}-{digest([built.text, built.negative])}", parts=parts)


def rules_digest() -> str:
    """All the prompt rules at once (every template, phrase, preset and catalogue entry, and the
    builder): when it changes, some render's `prompt_rules` may have."""
    from render_assets.domain import prompt_styles

    tables = [
        prompt_styles.TEMPLATES,
        prompt_styles.SEASONS,
        prompt_styles.TIMES_OF_DAY,
        prompt_styles.WEATHER,
        prompt_styles.CAMERA_ANGLES,
        QUALITY_PRESETS,
        [NEGATIVE_PROMPT, TECHNICAL, GROUP_PHRASES],
        builtin().plants,
    ]
    return digest([tables, builder_digest()])


@cache
def builder_digest() -> str:
    """The prompt builder's code (not its tables of words, which `prompt_rules` versions per use)."""
    from render_assets.domain import plant_catalogue, prompt_styles

    return logic_digest(sys.modules[__name__], prompt_styles, plant_catalogue)


PART_NAMES = {
    "template": "style template",
    "environment": "environment phrases",
    "quality": "quality preset",
    "plants": "plant catalogue entries",
    "phrases": "fixed prompt phrases",
    "builder": "prompt builder code",
}


def rules_change(before: dict[str, str], after: dict[str, str]) -> str:
    """What changed between two `PromptRules.parts`, in words ("style template 'modern' changed")."""
    if before.get("style") != after.get("style"):
        return f"style changed from {before.get('style', 'unknown')!r} to {after.get('style')!r}"
    changed = [
        f"{label} {after['style']!r}" if key == "template" else label
        for key, label in PART_NAMES.items()
        if before.get(key) != after.get(key)
    ]
    return (", ".join(changed) + " changed") if changed else "the prompt changed"
