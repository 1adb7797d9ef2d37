from dagster import ConfigurableResource

from render_assets.adapters.bullmq_queue import BullQueue


class RenderQueueResource(ConfigurableResource):
    """The BullMQ queue the web app enqueues render jobs on."""

    redis_url: str
    queue_name: str = "renderQueue"
    lock_duration_s: float = 300.0

    def get(self) -> BullQueue:
        return BullQueue(self.redis_url, self.queue_name, int(self.lock_duration_s * 1000))
