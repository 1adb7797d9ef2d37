"""The stages of a render and the percent each one reports, rising monotonically."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum


class Stage(StrEnum):
    CLAIMED = "claimed"
    CHARGED = "charged"
    PROMPT_READY = "prompt_ready"
    GENERATING = "generating"
    GENERATED = "generated"
    QUALITY_CHECKED = "quality_checked"
    UPLOADED = "uploaded"
    COMPLETED = "completed"
    FAILED = "failed"


# Stages besides the steps' own, which keep the percent reached: an attempt BullMQ will try again
# ("failed" always means for good), and a render waiting in BullMQ for an image provider.
RETRYING = "retrying"
WAITING_FOR_PROVIDER = "waiting_for_provider"
CANCELLED = "cancelled"  # its customer cancelled it: terminal, like completed and failed

# The web app's UI keys its labels off these numbers (>=20, >=50, >=80), so keep them close.
STAGE_PERCENT: dict[Stage, int] = {
    Stage.CLAIMED: 5,
    Stage.CHARGED: 10,
    Stage.PROMPT_READY: 20,
    Stage.GENERATING: 30,
    Stage.GENERATED: 70,
    Stage.QUALITY_CHECKED: 80,
    Stage.UPLOADED: 95,
    Stage.COMPLETED: 100,
}

STAGE_MESSAGE: dict[Stage, str] = {
    Stage.CLAIMED: "Job picked up",
    Stage.CHARGED: "Credits reserved",
    Stage.PROMPT_READY: "Analyzing design elements",
    Stage.GENERATING: "Generating landscape visualization",
    Stage.GENERATED: "Image generated",
    Stage.QUALITY_CHECKED: "Finalizing render quality",
    Stage.UPLOADED: "Image stored",
    Stage.COMPLETED: "Render complete",
    Stage.FAILED: "Render failed",
}


@dataclass(frozen=True)
class Progress:
    """What BullMQ's `job.updateProgress` carries, and what the renders row records."""

    percent: int
    stage: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def progress_for(stage: Stage, *, percent: int | None = None, message: str | None = None) -> Progress:
    """A failure keeps the percent reached so far, so the bar never moves backwards."""
    return Progress(
        percent=STAGE_PERCENT.get(stage, 0) if percent is None else percent,
        stage=stage.value,
        message=message or STAGE_MESSAGE[stage],
    )
