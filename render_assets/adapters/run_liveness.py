"""Run liveness: a run worker proves it is alive by renewing a short-lived Redis key.

Dagster's default run launcher cannot tell that a run worker process died (a `kill -9`, an
out-of-memory kill): the run stays STARTED. A missing key tells the reconciler within seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

log = logging.getLogger(__name__)


class RunLiveness:
    def __init__(self, redis_url: str, *, ttl_s: float, prefix: str = "render-assets:run-alive:") -> None:
        self.client = redis.Redis.from_url(redis_url, socket_timeout=5)
        self.ttl_ms = int(ttl_s * 1000)
        self.prefix = prefix

    def beat(self, run_id: str) -> None:
        self.client.set(self.prefix + run_id, b"1", px=self.ttl_ms)

    def is_alive(self, run_id: str) -> bool:
        return bool(self.client.exists(self.prefix + run_id))

    def forget(self, run_id: str) -> None:
        self.client.delete(self.prefix + run_id)


class Heartbeat:
    """A daemon thread that calls `beat` every `interval_s` until stopped (or the process dies)."""

    def __init__(self, beat: Callable[[], None], interval_s: float) -> None:
        self._beat = beat
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="render-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._beat_once()  # the first beat before any work, so a live run is never taken for dead
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self._interval_s + 5)

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self._beat_once()

    def _beat_once(self) -> None:
        try:
            self._beat()
        except Exception:  # a Redis hiccup must not stop the run; the next beat may succeed
            log.warning("heartbeat failed", exc_info=True)
