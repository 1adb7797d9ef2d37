"""One progress publisher: the renders row, the render's event stream (for browsers) and, for runs
that hold a BullMQ claim, the job."""

from __future__ import annotations

import logging

from render_assets.adapters.bullmq_queue import BullQueue, JobRef
from render_assets.adapters.event_stream import EventStream
from render_assets.domain import renders
from render_assets.domain.database import Database
from render_assets.domain.progress import Progress, Stage, progress_for
from render_assets.domain.progress_events import event_for, render_state

log = logging.getLogger(__name__)


class ProgressPublisher:
    def __init__(self, database: Database, queue: BullQueue, events: EventStream | None = None) -> None:
        self.database = database
        self.queue = queue
        self.events = events

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
