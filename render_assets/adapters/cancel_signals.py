"""Cancel signals: the side that cancels a render pushes to a per-render Redis list, and the run
rendering it, whose heartbeat waits on that list between beats, stops within moments."""

from __future__ import annotations

import redis

DEFAULT_PREFIX = "render-assets:cancel:"
SIGNAL_TTL_S = 3600  # a run that has not started by then was dropped by its claim check anyway


class CancelSignals:
    def __init__(self, redis_url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.client = redis.Redis.from_url(redis_url, socket_timeout=30, socket_connect_timeout=5)
        self.prefix = prefix

    def key(self, render_id: str) -> str:
        return f"{self.prefix}{render_id}"

    def send(self, render_id: str) -> None:
        pipeline = self.client.pipeline()
        pipeline.lpush(self.key(render_id), b"1")
        pipeline.expire(self.key(render_id), SIGNAL_TTL_S)
        pipeline.execute()

    def wake_key(self, run_id: str) -> str:
        return f"{self.prefix}wake:{run_id}"

    def wait(self, render_id: str, timeout_s: float, *, run_id: str) -> bool:
        """Block up to `timeout_s` for a cancel of the render, or until `wake(run_id)`; True when
        a cancel came."""
        cancel_key = self.key(render_id)
        popped = self.client.blpop([cancel_key, self.wake_key(run_id)], timeout=max(timeout_s, 0.01))
        return popped is not None and popped[0] in (cancel_key, cancel_key.encode())

    def wake(self, run_id: str) -> None:
        """End the run's current `wait` now (its heartbeat stops)."""
        pipeline = self.client.pipeline()
        pipeline.lpush(self.wake_key(run_id), b"1")
        pipeline.expire(self.wake_key(run_id), 60)
        pipeline.execute()
