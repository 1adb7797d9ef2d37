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
    """A daemon thread that calls `beat` every `interval_s` until stopped (or the process dies).

    `pause(interval_s)` is how it waits between beats (default: a sleep that `stop` cuts short);
    a pause may act on what arrives meanwhile, as a wait for a cancel signal does. `wake` cuts
    such a pause short when the heartbeat stops, so a run's end never waits out a pause."""

    def __init__(
        self,
        beat: Callable[[], None],
        interval_s: float,
        *,
        pause: Callable[[float], None] | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self._beat = beat
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._pause = pause or self._stopped.wait
        self._wake = wake
        self._thread = threading.Thread(target=self._loop, name="render-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._beat_once()  # the first beat before any work, so a live run is never taken for dead
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._wake is not None:
            try:
                self._wake()
            except Exception:  # then the pause ends on its own clock
                log.warning("heartbeat wake-up failed", exc_info=True)
        self._thread.join(timeout=self._interval_s + 5)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                self._pause(self._interval_s)
            except Exception:  # a Redis hiccup in the wait: beat on, on a plain clock
                log.warning("heartbeat pause failed", exc_info=True)
                self._stopped.wait(self._interval_s)
            if not self._stopped.is_set():
                self._beat_once()

    def _beat_once(self) -> None:
        try:
            self._beat()
        except Exception:  # a Redis hiccup must not stop the run; the next beat may succeed
            log.warning("heartbeat failed", exc_info=True)
