"""Quality checks on a generated image (first cut: it is the right size and not blank)."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image, ImageStat

BLANK_STDDEV = 4.0  # per-channel standard deviation below which an image is one flat colour


@dataclass(frozen=True)
class QaVerdict:
    verdict: str  # pass | fail
    reasons: list[str] = field(default_factory=list)
    width: int = 0
    height: int = 0
    mean_brightness: float = 0.0
    contrast: float = 0.0

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


def check_image(image: Image.Image, expected_size: tuple[int, int]) -> QaVerdict:
    reasons = []
    if image.size != expected_size:
        reasons.append(
            f"size {image.width}x{image.height} differs from the requested {expected_size[0]}x{expected_size[1]}"
        )
    # Statistics on a small copy: the same answer at 4K for a fraction of the time.
    sample = image.convert("RGB")
    sample.thumbnail((256, 256))
    stats = ImageStat.Stat(sample)
    contrast = max(stats.stddev)
    brightness = sum(stats.mean) / 3
    if contrast < BLANK_STDDEV:
        reasons.append(f"image is blank (contrast {contrast:.1f})")
    return QaVerdict(
        verdict="fail" if reasons else "pass",
        reasons=reasons,
        width=image.width,
        height=image.height,
        mean_brightness=round(brightness, 2),
        contrast=round(contrast, 2),
    )
