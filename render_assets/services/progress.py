"""One progress publisher: the renders row and, for runs that hold a BullMQ claim, the job."""

from __future__ import annotations

import logging

from render_assets.adapters.bullmq_queue import BullQueue, JobRef
from render_assets.domain import renders
from render_assets.domain.database import Database
from render_assets.domain.progress import Progress, Stage, progress_for

log = logging.getLogger(__name__)


class ProgressPublisher:
    def __init__(self, database: Database, queue: BullQueue) -> None:
        self.database = database
        self.queue = queue

    def publish(self, render_id: str, bull: JobRef | None, stage: Stage, *, message: str | None = None) -> None:
        self.send(render_id, bull, progress_for(stage, message=message))

    def send(self, render_id: str, bull: JobRef | None, progress: Progress) -> None:
        with self.database.session() as session:
            renders.record_progress(session, render_id, progress)
        if bull is not None:
            # Also renews the claim's lock, so a long render keeps its job.
            self.queue.report_progress(bull, progress.as_dict())
