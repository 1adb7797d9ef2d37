"""Stage 3: the quality checks a render must pass before delivery."""

from __future__ import annotations

from PIL import Image

from render_assets.domain.progress import Stage
from render_assets.domain.qa import QaVerdict, check_image
from render_assets.services.failures import RenderFailed
from render_assets.services.progress import ProgressPublisher
from render_assets.services.run_context import RenderRun


def check_quality(run: RenderRun, progress: ProgressPublisher, image: Image.Image) -> QaVerdict:
    verdict = check_image(image, run.job.settings.size)
    if not verdict.passed:
        # The same image would fail again, but another BullMQ attempt draws a new one.
        raise RenderFailed("quality check failed: " + "; ".join(verdict.reasons), permanent=False)
    progress.publish(run.render_id, run.bull, Stage.QUALITY_CHECKED)
    return verdict
