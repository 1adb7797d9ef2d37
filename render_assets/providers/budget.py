"""One retry budget per render attempt: a deadline and a cap on provider calls, shared by every
layer that retries (the failover's own rounds and Dagster's step retries of `raw_render`).

The state lives in Redis under the run's key, so a step retry (a new process, or the same one)
continues the same budget, and remembers which providers refused the prompt or may already
have billed for it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

# Returns milliseconds since the budget began; the first caller sets the start (Redis's clock).
_BEGIN = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('HSETNX', KEYS[1], 'started_ms', now)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return now - tonumber(redis.call('HGET', KEYS[1], 'started_ms'))
"""

REFUSED = "refused"  # this provider refused the prompt: never ask it again for this render
BILLED = "billed"  # a call to this provider may have produced (and billed) an image: don't pay twice


@dataclass(frozen=True)
class BudgetSettings:
    deadline_s: float = 120.0
    max_calls: int = 6

    def __post_init__(self) -> None:
        if self.deadline_s <= 0:
            raise ValueError("RENDER_JOB_DEADLINE_S must be positive")
        if self.max_calls < 1:
            raise ValueError("the provider call budget must allow at least one call")


class RetryBudget:
    def __init__(
        self,
        client: redis.Redis,
        key: str,
        settings: BudgetSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.key = key
        self.settings = settings
        self.clock = clock
        self._deadline: float | None = None
        self._begin = client.register_script(_BEGIN)

    def begin(self) -> None:
        """Start (or continue) the budget; the deadline counts from the first begin."""
        ttl_ms = int((self.settings.deadline_s + 3600) * 1000)
        elapsed_s = int(self._begin(keys=[self.key], args=[ttl_ms])) / 1000
        self._deadline = self.clock() + self.settings.deadline_s - elapsed_s

    def remaining(self) -> float:
        if self._deadline is None:
            raise RuntimeError("RetryBudget.begin() was not called")
        return max(0.0, self._deadline - self.clock())

    def calls(self) -> int:
        return int(self.client.hget(self.key, "calls") or 0)

    def take_call(self) -> int:
        """Spend one provider call; returns how many this run has made."""
        return int(self.client.hincrby(self.key, "calls", 1))

    def mark(self, provider: str, flag: str) -> None:
        self.client.hset(self.key, f"{flag}:{provider}", 1)

    def marked(self, provider: str, flag: str) -> bool:
        return bool(self.client.hexists(self.key, f"{flag}:{provider}"))

    def providers_marked(self, flag: str) -> list[str]:
        prefix = f"{flag}:"
        fields = (f.decode() if isinstance(f, bytes) else str(f) for f in self.client.hkeys(self.key))
        return sorted(f[len(prefix) :] for f in fields if f.startswith(prefix))
