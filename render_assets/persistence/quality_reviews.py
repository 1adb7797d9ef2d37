"""The `quality_reviews` table: renders QA held for a person, and the decisions taken on them.

A held customer render waits in the renders row with status `in_review` (a status of this
module's: neither in flight nor ended, so neither the claim sensor's recovery nor the
reconciler's settlement touches it) until a reviewer approves or rejects it.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from render_assets.domain.progress import Stage, progress_for
from render_assets.domain.qa import QaVerdict
from render_assets.persistence import renders
from render_assets.persistence.models import QualityReview, RenderStatus, utcnow

IN_REVIEW = RenderStatus.IN_REVIEW  # renders.status of a customer's render held for review
PENDING, APPROVED, REJECTED, CANCELLED = "pending", "approved", "rejected", "cancelled"
STATUSES = (PENDING, APPROVED, REJECTED)
HELD_MESSAGE = "Held for manual quality review"
MAX_NOTE_CHARS = 500


class ReviewError(ValueError):
    """A review command that cannot be carried out; the message says why."""


def hold(
    session: Session,
    *,
    render_id: str,
    organization_id: str,
    verdict: QaVerdict,
    image_key: str,
    image_url: str,
    prompt_hash: str,
    customer_attempt: bool,
) -> int:
    """Queue the render for review (a re-run's hold replaces an earlier one); returns the review id."""
    values = {
        "render_id": render_id,
        "organization_id": organization_id,
        "status": PENDING,
        "score": verdict.score,
        "reasons": list(verdict.reasons),
        "measures": verdict.measures(),
        "image_key": image_key,
        "image_url": image_url,
        "prompt_hash": prompt_hash,
        "customer_attempt": customer_attempt,
        "created_at": utcnow(),
        "decided_at": None,
        "decided_by": None,
        "note": None,
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(QualityReview).values(**values)
    updated = {key: statement.excluded[key] for key in values if key != "render_id"}
    session.execute(statement.on_conflict_do_update(index_elements=["render_id"], set_=updated))
    review_id = session.execute(select(QualityReview.id).where(QualityReview.render_id == render_id)).scalar_one()
    return int(review_id)


def mark_render_held(session: Session, render_id: str, result: dict[str, object]) -> bool:
    """Put a customer's render in `in_review`, unless it was delivered before (then it stays so)."""
    render = renders.require(session, render_id)
    if render.status == "completed":
        return False
    held = progress_for(Stage.QUALITY_CHECKED, message=HELD_MESSAGE)
    render.status = IN_REVIEW
    render.stage, render.message = held.stage, held.message
    render.progress = max(render.progress or 0, held.percent)
    render.result = result
    render.error = None
    return True


def get(session: Session, review_id: int) -> QualityReview | None:
    return session.get(QualityReview, review_id)


def require(session: Session, review_id: int) -> QualityReview:
    review = session.get(QualityReview, review_id)
    if review is None:
        raise ReviewError(f"no quality review {review_id}")
    return review


def for_render(session: Session, render_id: str) -> QualityReview | None:
    return session.execute(select(QualityReview).where(QualityReview.render_id == render_id)).scalar_one_or_none()


def listed(
    session: Session, *, status: str | None = PENDING, organization_id: str | None = None, limit: int = 50
) -> list[QualityReview]:
    """Reviews, oldest first (the queue order), optionally of one status and organization."""
    if status is not None and status not in STATUSES:
        raise ReviewError(f"unknown review status {status!r}; expected one of {', '.join(STATUSES)}")
    query = select(QualityReview).order_by(QualityReview.created_at, QualityReview.id).limit(limit)
    if status is not None:
        query = query.where(QualityReview.status == status)
    if organization_id is not None:
        query = query.where(QualityReview.organization_id == organization_id)
    return list(session.execute(query).scalars())


def decide(session: Session, review_id: int, *, status: str, by: str | None, note: str | None) -> bool:
    """Move a pending review to `status`; False when it was not pending (someone decided first)."""
    moved = session.execute(
        update(QualityReview)
        .where(QualityReview.id == review_id, QualityReview.status == PENDING)
        .values(status=status, decided_at=utcnow(), decided_by=by, note=(note or None) and note[:MAX_NOTE_CHARS])
    )
    return bool(getattr(moved, "rowcount", 0))


def reopen(session: Session, review_id: int) -> None:
    """An approval whose delivery failed: the review is pending again."""
    session.execute(
        update(QualityReview)
        .where(QualityReview.id == review_id, QualityReview.status == APPROVED)
        .values(status=PENDING, decided_at=None, decided_by=None, note=None)
    )


def cancel_pending(session: Session, render_id: str) -> None:
    """Its customer cancelled the render: a review still pending has nothing left to decide."""
    session.execute(
        update(QualityReview)
        .where(QualityReview.render_id == render_id, QualityReview.status == PENDING)
        .values(status=CANCELLED, decided_at=utcnow(), decided_by="customer", note="render cancelled")
    )
