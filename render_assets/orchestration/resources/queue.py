import logging
import threading
from dataclasses import fields

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.adapters.cancel_signals import CancelSignals
from render_assets.adapters.event_stream import EventStream
from render_assets.adapters.run_liveness import Heartbeat, RunLiveness
from render_assets.orchestration.resources.database import DatabaseResource
from render_assets.orchestration.resources.storage import BlobStorageResource
from render_assets.orchestration.run_identity import RunIdentity
from render_assets.services import cancellation
from render_assets.services.backends import Backends, QueueSettings
from render_assets.services.cancellation import CancelOutcome
from render_assets.services.run_context import load_run

log = logging.getLogger(__name__)


class RenderQueueResource(ConfigurableResource):
    """The BullMQ queue the web app enqueues render jobs on.

    In a run that holds a BullMQ claim it also keeps the claim alive, as BullMQ's own workers
    do: a heartbeat renews the job's lock and the run's liveness key, which the reconciler reads
    to tell a live run from a dead one.
    """

    # QueueSettings' fields, names and defaults
    redis_url: str
    queue_name: str = QueueSettings.queue_name
    lock_duration_s: float = QueueSettings.lock_duration_s
    heartbeat_s: float = 5.0
    # How long an idle render-sensor tick waits on BullMQ for a job (0: it only polls).
    claim_wait_s: float = 0.0
    # The per-render progress event streams live in the same Redis (read by `render-assets serve`).
    events_prefix: str = QueueSettings.events_prefix
    events_maxlen: int = QueueSettings.events_maxlen
    events_ttl_s: int = QueueSettings.events_ttl_s
    # A render cancelled after its image was made is refunded too (default: the charge stands).
    cancel_refund_after_generation: bool = False
    database: DatabaseResource

    _heartbeat: Heartbeat | None = PrivateAttr(default=None)

    def settings(self) -> QueueSettings:
        return QueueSettings(**{field.name: getattr(self, field.name) for field in fields(QueueSettings)})

    def get(self) -> BullQueue:
        return self.settings().open_queue()

    def liveness(self) -> RunLiveness:
        return RunLiveness(self.redis_url, ttl_s=self.heartbeat_s * 3)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        run = context.dagster_run
        identity = RunIdentity.of(run) if run is not None else None
        if run is None or identity is None or identity.render_id is None or identity.is_operator_run:
            return  # an operator's re-render holds no claim: nothing to keep alive
        render_id, run_id, instance = identity.render_id, run.run_id, context.instance
        render = load_run(self.database.get(), render_id, identity.claim_run_key)
        claim, queue, liveness, signals = render.bull, self.get(), self.liveness(), self.cancel_signals()
        stopping = threading.Event()

        def stop_run(why: str) -> None:
            """Cancelled: the run ends through Dagster (CANCELED in the UI), its step interrupted."""
            if stopping.is_set() or instance is None:
                return
            stopping.set()
            log.warning("render %s was cancelled (%s): terminating run %s", render_id, why, run_id)
            instance.run_launcher.terminate(run_id)

        def pause(interval_s: float) -> None:
            if signals.wait(render_id, interval_s, run_id=run_id):
                stop_run("cancel requested")  # once: a second signal finds the run stopping

        def beat() -> None:
            liveness.beat(run_id)
            if claim is not None and not queue.extend_lock(claim) and queue.state(claim.job_id) is None:
                # The web app removed (or obliterated) the job while we render it: a cancel.
                self.cancel(render_id, source="bullmq: job removed")
                stop_run("its BullMQ job was removed")

        self._heartbeat = Heartbeat(beat, self.heartbeat_s, pause=pause, wake=lambda: signals.wake(run_id)).start()

    def cancel(self, render_id: str, *, source: str) -> CancelOutcome:
        """Cancel a render (services/cancellation.py) with this queue's back-ends."""
        return cancellation.cancel(self.backends(), render_id, source=source)

    def backends(self, storage: BlobStorageResource | None = None) -> Backends:
        """The stages' back-ends: this queue, its event streams and cancel signals, its database
        and, when given, blob storage (each resource may be overridden on its own)."""
        return Backends(
            database=self.database.get(),
            queue=self.get(),
            storage=storage.get if storage is not None else None,
            events=self.events(),
            cancel_signals=self.cancel_signals(),
            initial_credits=self.database.initial_credits,
            cancel_refund_after_generation=self.cancel_refund_after_generation,
        )

    def cancel_signals(self) -> CancelSignals:
        return self.settings().open_cancel_signals()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None

    def events(self) -> EventStream:
        return self.settings().open_events()
