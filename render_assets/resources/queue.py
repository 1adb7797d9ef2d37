from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.adapters.event_stream import EventStream
from render_assets.adapters.run_liveness import Heartbeat, RunLiveness
from render_assets.resources.database import DatabaseResource
from render_assets.run_identity import RunIdentity
from render_assets.services.run_context import load_run


class RenderQueueResource(ConfigurableResource):
    """The BullMQ queue the web app enqueues render jobs on.

    In a run that holds a BullMQ claim it also keeps the claim alive, as BullMQ's own workers
    do: a heartbeat renews the job's lock and the run's liveness key, which the reconciler reads
    to tell a live run from a dead one.
    """

    redis_url: str
    queue_name: str = "renderQueue"
    lock_duration_s: float = 60.0
    heartbeat_s: float = 5.0
    # The per-render progress event streams live in the same Redis (read by `render-assets serve`).
    events_prefix: str = "render-events:"
    events_maxlen: int = 1000
    events_ttl_s: int = 86400
    database: DatabaseResource

    _heartbeat: Heartbeat | None = PrivateAttr(default=None)

    def get(self) -> BullQueue:
        return BullQueue(self.redis_url, self.queue_name, int(self.lock_duration_s * 1000))

    def liveness(self) -> RunLiveness:
        return RunLiveness(self.redis_url, ttl_s=self.heartbeat_s * 3)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        run = context.dagster_run
        identity = RunIdentity.of(run) if run is not None else None
        if run is None or identity is None or identity.render_id is None or identity.is_operator_run:
            return  # an operator's re-render holds no claim: nothing to keep alive
        render = load_run(self.database.get(), identity.render_id, identity.claim_run_key)
        claim, queue, liveness, run_id = render.bull, self.get(), self.liveness(), run.run_id

        def beat() -> None:
            liveness.beat(run_id)
            if claim is not None:
                queue.extend_lock(claim)

        self._heartbeat = Heartbeat(beat, self.heartbeat_s).start()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None

    def events(self) -> EventStream:
        return EventStream(
            self.redis_url, prefix=self.events_prefix, maxlen=self.events_maxlen, ttl_s=self.events_ttl_s
        )
