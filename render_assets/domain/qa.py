"""Quality checks on a generated image, a score, and a verdict: pass, review or fail.

Hard checks fail the image whatever its score: it decodes (Pillow, with the decompression-bomb
limits of `imaging.decode`), its format is one we deliver from, its size is the requested one,
it is not one flat colour, it is not a known provider failure image (pHash within
`PLACEHOLDER_MAX_DISTANCE` of one in `data/failure_images/`), and it is not a duplicate of an
earlier render of the same organization (pHash within `DUPLICATE_MAX_DISTANCE`).

Soft checks each give a factor in [0, 1], and the score is their product (0 when a hard check
failed):

    exposure = ramp(mean brightness; 0 at <=15 or >=245, 1 within 45..215)
    contrast = ramp(largest channel standard deviation; 0 at 4, 1 at >=10)
    detail   = ramp(edge energy; 0 at <=1.0, 1 at >=4.0)
    score    = exposure * contrast * detail

Each ramp is linear between its two points. Verdict: `fail` on a hard failure or a score below
`FAIL_BELOW`; `review` for a score below `REVIEW_BELOW` or when the job asks for manual review;
`pass` otherwise. All measures are taken on a working copy at most 512 px on its longest side,
so they mean the same at every resolution and cost milliseconds at 4K. Edge energy is the mean
absolute difference between neighbouring grey levels, across and down (a sharp photo scores
5-25; a blurred or empty card 0.5-2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from render_assets.domain import failure_images, imaging, phash

BLANK_STDDEV = 4.0  # per-channel standard deviation below which an image is one flat colour
DELIVERABLE_FORMATS = ("PNG", "JPEG", "WEBP")
PLACEHOLDER_MAX_DISTANCE = 10  # of 64 bits; unrelated scenes sit at 20-40 from every known card
# The band index guarantees recall up to 3 bits (4 bands); re-encoded, resized or recoloured
# copies of a render measure 0-2, renders of the same design with another seed 2 or more.
DUPLICATE_MAX_DISTANCE = 3
FAIL_BELOW = 0.4
REVIEW_BELOW = 0.75

DARK = (15.0, 45.0)  # mean brightness: 0 at or below the first, 1 from the second
BRIGHT = (215.0, 245.0)  # 1 up to the first, 0 at or above the second
CONTRAST = (BLANK_STDDEV, 10.0)
DETAIL = (1.0, 4.0)
# With a mask: the provider's mean change outside the marked area (0-255), measured before the
# photo was put back there. Up to the first it respected the mask (JPEG round trips, a feathered
# seam); from the second it repainted the scene, and the score drops by MASK_IGNORED_PENALTY: a
# render whose provider ignored the mask is held for a person, not a silent success.
MASK_KEPT = (8.0, 40.0)
MASK_IGNORED_PENALTY = 0.4

assert DUPLICATE_MAX_DISTANCE < phash.BAND_COUNT, "band lookup would miss duplicates"


@dataclass(frozen=True)
class Duplicate:
    render_id: str
    distance: int


DuplicateFinder = Callable[[int], Duplicate | None]


@dataclass(frozen=True)
class Measures:
    width: int
    height: int
    mean_brightness: float
    contrast: float
    edge_energy: float
    phash: int


@dataclass(frozen=True)
class QaVerdict:
    verdict: str  # pass | review | fail
    reasons: list[str] = field(default_factory=list)
    width: int = 0
    height: int = 0
    mean_brightness: float = 0.0
    contrast: float = 0.0
    edge_energy: float = 0.0
    score: float = 0.0
    phash: str = ""  # 16 hex digits; empty when the image did not decode
    format: str | None = None
    placeholder: str | None = None  # the nearest known failure image, and its distance
    placeholder_distance: int | None = None
    duplicate_of: str | None = None
    duplicate_distance: int | None = None
    outside_mask_difference: float | None = None  # only for renders with a mask

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def held(self) -> bool:
        return self.verdict == "review"

    def measures(self) -> dict[str, float]:
        """Every numeric measure, for asset metadata (absent ones are left out)."""
        values: dict[str, float | int | None] = {
            "score": self.score,
            "mean_brightness": self.mean_brightness,
            "contrast": self.contrast,
            "edge_energy": self.edge_energy,
            "placeholder_distance": self.placeholder_distance,
            "duplicate_distance": self.duplicate_distance,
            "outside_mask_difference": self.outside_mask_difference,
        }
        return {key: value for key, value in values.items() if value is not None}


def ramp(value: float, low: float, high: float) -> float:
    """0 at or below `low`, 1 at or above `high`, linear between."""
    if value <= low:
        return 0.0
    if value >= high:
        return 1.0
    return (value - low) / (high - low)


def measure(image: Image.Image) -> Measures:
    work = phash.working_copy(image)
    rgb = np.asarray(work, dtype=np.float32)
    grey = np.asarray(work.convert("L"), dtype=np.float32)
    across = float(np.abs(np.diff(grey, axis=1)).mean()) if grey.shape[1] > 1 else 0.0
    down = float(np.abs(np.diff(grey, axis=0)).mean()) if grey.shape[0] > 1 else 0.0
    return Measures(
        width=image.width,
        height=image.height,
        mean_brightness=round(float(grey.mean()), 2),
        contrast=round(float(rgb.reshape(-1, 3).std(axis=0).max()), 2),
        edge_energy=round(across + down, 3),
        phash=phash.phash(work),
    )


def _soft_factors(m: Measures) -> tuple[float, list[str]]:
    exposure = min(ramp(m.mean_brightness, *DARK), 1.0 - ramp(m.mean_brightness, *BRIGHT))
    contrast = ramp(m.contrast, *CONTRAST)
    detail = ramp(m.edge_energy, *DETAIL)
    reasons = []
    if exposure < 1.0:
        side = "dark" if m.mean_brightness < DARK[1] else "bright"
        reasons.append(f"image is too {side} (mean brightness {m.mean_brightness:.1f})")
    if contrast < 1.0:
        reasons.append(f"image has low contrast ({m.contrast:.1f})")
    if detail < 1.0:
        reasons.append(f"image has low detail (edge energy {m.edge_energy:.2f})")
    return round(exposure * contrast * detail, 4), reasons


def check_image(
    image: Image.Image,
    expected_size: tuple[int, int],
    *,
    find_duplicate: DuplicateFinder | None = None,
    force_review: bool = False,
    known_failures: tuple[failure_images.KnownFailure, ...] | None = None,
    outside_mask_difference: float | None = None,
) -> QaVerdict:
    """Every check on a decoded image. `find_duplicate` looks a hash up among earlier renders;
    `outside_mask_difference`: how much the provider changed outside the mask (renders with one)."""
    hard: list[str] = []
    if image.format is not None and image.format not in DELIVERABLE_FORMATS:
        hard.append(f"format {image.format} is not one of {', '.join(DELIVERABLE_FORMATS)}")
    if image.size != expected_size:
        hard.append(
            f"size {image.width}x{image.height} differs from the requested {expected_size[0]}x{expected_size[1]}"
        )
    m = measure(image)
    placeholder = duplicate = None
    soft_score = 0.0
    soft: list[str] = []
    if m.contrast < BLANK_STDDEV:
        # One flat colour: the other measures would only restate it.
        hard.append(f"image is blank (contrast {m.contrast:.1f})")
    else:
        soft_score, soft = _soft_factors(m)
        if outside_mask_difference is not None:
            ignored = ramp(outside_mask_difference, *MASK_KEPT)
            soft_score = round(soft_score * (1.0 - MASK_IGNORED_PENALTY * ignored), 4)
            if ignored > 0:
                soft.append(
                    f"the provider changed the photo outside the marked area (mean difference "
                    f"{outside_mask_difference:.1f} of 255); the photo was put back there"
                )
        placeholder = failure_images.closest_failure(m.phash, known_failures)
        if placeholder is not None and placeholder.distance <= PLACEHOLDER_MAX_DISTANCE:
            hard.append(
                f"image matches the known failure image {placeholder.name!r} (pHash distance {placeholder.distance})"
            )
        duplicate = find_duplicate(m.phash) if find_duplicate else None
        if duplicate is not None and duplicate.distance <= DUPLICATE_MAX_DISTANCE:
            hard.append(f"image duplicates render {duplicate.render_id} (pHash distance {duplicate.distance})")
    score = 0.0 if hard else soft_score
    if hard or score < FAIL_BELOW:
        verdict = "fail"
    elif score < REVIEW_BELOW or force_review:
        verdict = "review"
    else:
        verdict = "pass"
    reasons = hard + soft
    if force_review and verdict == "review" and score >= REVIEW_BELOW:
        reasons.append("manual review requested")
    return QaVerdict(
        verdict=verdict,
        reasons=reasons,
        width=m.width,
        height=m.height,
        mean_brightness=m.mean_brightness,
        contrast=m.contrast,
        edge_energy=m.edge_energy,
        score=score,
        phash=phash.to_hex(m.phash),
        format=image.format,
        placeholder=placeholder.name if placeholder else None,
        placeholder_distance=placeholder.distance if placeholder else None,
        duplicate_of=duplicate.render_id if duplicate else None,
        outside_mask_difference=outside_mask_difference,
        duplicate_distance=duplicate.distance if duplicate else None,
    )


def check_bytes(
    data: bytes,
    expected_size: tuple[int, int],
    *,
    find_duplicate: DuplicateFinder | None = None,
    force_review: bool = False,
    known_failures: tuple[failure_images.KnownFailure, ...] | None = None,
) -> QaVerdict:
    """The checks on an encoded image, as a provider returns it: first that it decodes safely."""
    try:
        image = imaging.decode(data)
    except imaging.UnreadableImage as error:
        return QaVerdict(verdict="fail", reasons=[str(error)])
    return check_image(
        image, expected_size, find_duplicate=find_duplicate, force_review=force_review, known_failures=known_failures
    )
