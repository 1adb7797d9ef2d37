"""One progress publisher: the renders row, the render's event stream (for browsers) and, for runs
that hold a BullMQ claim, the job."""

from __future__ import annotations

import logging
from typing import Any

from render_assets.adapters.bullmq_queue import BullQueue, JobRef
from render_assets.adapters.event_stream import EventStream
from render_assets.domain.progress import Progress, Stage, progress_for
from render_assets.persistence import renders
from render_assets.persistence.database import Database
from render_assets.persistence.progress_events import claimed_event, event_for, render_state, rerendered_event
from render_assets.services.run_context import RenderRun

log = logging.getLogger(__name__)


class ProgressPublisher:
    def __init__(self, database: Database, queue: BullQueue, events: EventStream | None = None) -> None:
        self.database = database
        self.queue = queue
        self.events = events

    def stage(self, run: RenderRun, stage: Stage, *, message: str | None = None) -> None:
        """A stage a run reached; an operator's re-render reports none (`RenderRun.reports_progress`)."""
        if run.reports_progress:
            self.publish(run.render_id, run.bull, stage, message=message)

    def publish(self, render_id: str, bull: JobRef | None, stage: Stage, *, message: str | None = None) -> None:
        self.send(render_id, bull, progress_for(stage, message=message))

    def send(self, render_id: str, bull: JobRef | None, progress: Progress) -> None:
        with self.database.session() as session:
            before = render_state(session, render_id) if self.events is not None else None
            progress = renders.record_progress(session, render_id, progress) or progress
        if self.events is not None:
            try:
                self.events.append(render_id, event_for(render_id, progress, before=before))
            except Exception:
                # Browsers are a convenience: the row and the BullMQ job (whose progress call
                # also renews the claim's lock) must not wait on them. The progress server falls
                # back to the row when a stream misses its terminal event.
                log.warning("could not append progress of render %s to its event stream", render_id, exc_info=True)
        if bull is not None:
            try:
                # Also renews the claim's lock, so a long render keeps its job.
                self.queue.report_progress(bull, progress.as_dict())
            except Exception:
                # A Redis blip must not fail the render: the heartbeat renews the lock, and the
                # next stage (or settlement) tells BullMQ where the render stands.
                log.warning("could not report progress of render %s to BullMQ", render_id, exc_info=True)

    def claimed(self, render_id: str, bull: JobRef) -> None:
        """The claim just recorded (the row says `claimed` already): BullMQ and the stream hear of it
        before the run starts. Best effort, like every publish: the claim stands either way."""
        claimed = progress_for(Stage.CLAIMED)
        try:
            if self.events is not None:
                self.events.append(render_id, claimed_event(render_id))
            self.queue.report_progress(bull, claimed.as_dict())
        except Exception:
            log.warning("could not publish the claim of render %s", render_id, exc_info=True)

    def rerendered(self, render_id: str, version: int, result: dict[str, Any]) -> None:
        """Tell browsers about a new version of a delivered render: an event on its stream only
        (the row already holds the version; BullMQ's job ended with the first delivery)."""
        if self.events is None:
            return
        try:
            self.events.append(render_id, rerendered_event(render_id, version, result))
        except Exception:
            log.warning("could not append the re-render of render %s to its event stream", render_id, exc_info=True)
