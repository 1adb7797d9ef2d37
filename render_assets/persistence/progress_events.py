"""What a browser following a render sees: progress changes as named events, and the renders row
as a snapshot when the live stream cannot be replayed.

Event names: `stage` (a new stage), `progress` (the percent moved within a stage), and the two
terminal ones, `completed` (with the image URLs) and `failed` (a final failure, with the reason),
and `cancelled` (its customer cancelled it).
An attempt that failed while BullMQ will try again is a `stage` event with stage `retrying`: a
client closes on `completed`, `failed` and `cancelled` only, and each ends the render for good.

Later, an operator's re-render that delivered a new version appends `rerendered` (the version
number and the new result, in the shape of BullMQ's `completed`): it is terminal as well, for a
client that reads the stream after it was appended.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from render_assets.domain.progress import CANCELLED, RETRYING, Progress, Stage, progress_for
from render_assets.persistence.models import Render, RenderStatus


class EventKind(StrEnum):
    STAGE = "stage"
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RERENDERED = "rerendered"


TERMINAL = frozenset({EventKind.COMPLETED, EventKind.FAILED, EventKind.CANCELLED, EventKind.RERENDERED})
WITH_IMAGES = frozenset({EventKind.COMPLETED, EventKind.RERENDERED})  # events whose data carries image URLs
QUEUED = "queued"  # the stage of a render that has no row yet (enqueued, not claimed)


@dataclass(frozen=True)
class RenderState:
    """The part of a renders row that events need (never the payload: it holds user text)."""

    render_id: str
    status: str
    stage: str
    percent: int
    message: str | None
    error: str | None
    image_url: str | None
    thumbnail_url: str | None
    result: dict[str, Any] | None
    version: int | None = None  # the delivered version the URLs are (2 and up after re-renders)


@dataclass(frozen=True)
class ProgressEvent:
    kind: EventKind
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL


def render_state(session: Session, render_id: str) -> RenderState | None:
    row = session.execute(
        select(
            Render.status,
            Render.stage,
            Render.progress,
            Render.message,
            Render.error,
            Render.image_url,
            Render.thumbnail_url,
            Render.result,
            Render.current_version,
        ).where(Render.id == render_id)
    ).one_or_none()
    if row is None:
        return None
    return RenderState(render_id, row[0], row[1], row[2] or 0, row[3], row[4], row[5], row[6], row[7], row[8])


def _base(render_id: str, stage: str, percent: int, message: str | None, status: str) -> dict[str, Any]:
    return {"renderId": render_id, "stage": stage, "percent": percent, "message": message, "status": status}


def _completed(state: RenderState, base: dict[str, Any]) -> ProgressEvent:
    data = {**base, "imageUrl": state.image_url, "thumbnailUrl": state.thumbnail_url, "result": state.result}
    if state.version is not None and state.version > 1:  # a re-render's URLs: say which version
        data["version"] = state.version
    return ProgressEvent(EventKind.COMPLETED, data)


def event_for(render_id: str, progress: Progress, *, before: RenderState | None) -> ProgressEvent:
    """The event for a progress change, given the row as it was just before the change was recorded.

    Delivery and settlement write the outcome to the row before they publish it, so `before`
    already holds the URLs of a completed render and tells a final failure from a retried one.
    """
    status = before.status if before is not None else RenderStatus.PROCESSING
    base = _base(render_id, progress.stage, progress.percent, progress.message, status)
    if progress.stage == Stage.COMPLETED and before is not None:
        return _completed(before, base)
    if progress.stage == CANCELLED:
        return ProgressEvent(EventKind.CANCELLED, {**base, "status": RenderStatus.CANCELLED})
    if progress.stage in (Stage.FAILED, RETRYING):
        if progress.stage == RETRYING or (before is not None and before.status == RenderStatus.RETRYING):
            return ProgressEvent(
                EventKind.STAGE,
                {**base, "stage": RETRYING, "message": "Attempt failed; retrying", "reason": progress.message},
            )
        return ProgressEvent(EventKind.FAILED, {**base, "status": RenderStatus.FAILED, "reason": progress.message})
    same_stage = before is not None and before.stage == progress.stage
    return ProgressEvent(EventKind.PROGRESS if same_stage else EventKind.STAGE, base)


def claimed_event(render_id: str) -> ProgressEvent:
    """A claim recorded: the render's first event."""
    claimed = progress_for(Stage.CLAIMED)
    return ProgressEvent(
        EventKind.STAGE, _base(render_id, claimed.stage, claimed.percent, claimed.message, RenderStatus.CLAIMED)
    )


def rerendered_event(render_id: str, version: int, result: dict[str, Any]) -> ProgressEvent:
    """A new version of a delivered render: the result as BullMQ's `completed` carries it."""
    done = progress_for(Stage.COMPLETED)
    base = _base(render_id, done.stage, done.percent, "Render re-rendered", RenderStatus.COMPLETED)
    return ProgressEvent(
        EventKind.RERENDERED,
        {
            **base,
            "version": version,
            "imageUrl": result.get("imageUrl"),
            "thumbnailUrl": result.get("thumbnailUrl"),
            "result": result,
        },
    )


def snapshot_event(render_id: str, state: RenderState | None) -> ProgressEvent:
    """Where the render stands according to the renders row, as the event a client would act on."""
    if state is None:
        return ProgressEvent(
            EventKind.STAGE, {**_base(render_id, QUEUED, 0, "Waiting in the queue", QUEUED), "snapshot": True}
        )
    base = {**_base(render_id, state.stage, state.percent, state.message, state.status), "snapshot": True}
    if state.status == RenderStatus.COMPLETED:
        return _completed(state, {**base, "stage": Stage.COMPLETED.value})
    if state.status == RenderStatus.FAILED:
        return ProgressEvent(EventKind.FAILED, {**base, "stage": Stage.FAILED.value, "reason": state.error})
    if state.status == RenderStatus.CANCELLED:
        return ProgressEvent(EventKind.CANCELLED, {**base, "stage": CANCELLED})
    if state.status == RenderStatus.RETRYING:
        return ProgressEvent(EventKind.STAGE, {**base, "stage": RETRYING, "reason": state.error})
    return ProgressEvent(EventKind.STAGE, base)
