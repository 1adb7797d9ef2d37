"""Stage 3: the quality checks a render must pass before delivery.

`fail` raises (BullMQ retries the render with a new seed while attempts remain; the last failure
refunds); `review` holds the render for a person (services/review.py); `pass` goes on to
delivery. The image's pHash is recorded for passed and held renders, so later renders of the
same organization are compared with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from render_assets.domain.progress import Stage
from render_assets.domain.qa import Duplicate, QaVerdict, check_image
from render_assets.persistence import perceptual_hashes
from render_assets.services import review
from render_assets.services.backends import Backends
from render_assets.services.failures import RenderFailed
from render_assets.services.run_context import RenderRun


class QualityFailed(RenderFailed):
    """QA failed the image; `verdict` carries the measures for the failure's metadata."""

    def __init__(self, verdict: QaVerdict) -> None:
        super().__init__("quality check failed: " + "; ".join(verdict.reasons), permanent=False)
        self.verdict = verdict


@dataclass(frozen=True)
class QualityOutcome:
    verdict: QaVerdict
    review_id: int | None = None  # set when the render was held for manual review


def check_quality(
    run: RenderRun,
    backends: Backends,
    image: Image.Image,
    *,
    prompt_hash: str,
    from_customer_photo: bool = False,
    outside_mask_difference: float | None = None,
) -> QualityOutcome:
    """`prompt_hash`: the hash of the prompt the image was made from (render_prompt's), recorded
    with a held render. `from_customer_photo`: the render edits the customer's photo, so the
    organization's other renders of that yard look alike by design and the duplicate check is
    skipped (its hash is still recorded). `outside_mask_difference`: how much the provider
    changed outside the customer's mask before the photo was put back (renders with a mask)."""
    database = backends.database
    organization_id = run.job.organizationId

    def find_duplicate(value: int) -> Duplicate | None:
        with database.session() as session:
            return perceptual_hashes.find_similar(
                session, organization_id=organization_id, value=value, exclude_render_id=run.render_id
            )

    verdict = check_image(
        image,
        run.job.settings.size,
        find_duplicate=None if from_customer_photo else find_duplicate,
        force_review=bool(run.job.settings.forceManualReview),
        outside_mask_difference=outside_mask_difference,
    )
    if verdict.verdict == "fail":
        # The same image would fail again, but another BullMQ attempt draws a new seed.
        raise QualityFailed(verdict)
    if verdict.held:
        review_id = review.hold(run, backends, image, verdict, prompt_hash=prompt_hash)
        return QualityOutcome(verdict, review_id)
    with database.session() as session:
        perceptual_hashes.record(
            session, render_id=run.render_id, organization_id=organization_id, value=int(verdict.phash, 16)
        )
    backends.progress.stage(run, Stage.QUALITY_CHECKED)
    return QualityOutcome(verdict)
