"""A circuit breaker per provider whose state lives in Redis, so every run and every worker
process sees the same picture: once a provider has failed K times in a row within a window, it
is skipped until a cool-down has passed; then a single probe call decides whether it closes.

An outage therefore costs at most K slow calls across all runs (plus one probe per cool-down),
not one per job. Each transition is one Lua script, so concurrent runs cannot double-probe;
the clock is Redis's own, so workers with skewed clocks agree."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

import redis

# KEYS[1] = breaker hash; ARGV = window_ms, cooldown_ms, probe_lease_ms, failures_to_open
# Fields: state (closed|open|half_open), failures, first_failure_ms, opened_ms, probe_until_ms
_ALLOW = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then return 'closed' end
local cooldown, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
if state == 'open' then
  local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_ms') or '0')
  if now < opened + cooldown then return 'open' end
else
  -- half_open: a probe is out; another may go only when its lease ran out (its run died)
  local until_ms = tonumber(redis.call('HGET', KEYS[1], 'probe_until_ms') or '0')
  if now < until_ms then return 'open' end
end
redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until_ms', now + lease)
return 'probe'
"""

_FAILURE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local window, needed = tonumber(ARGV[1]), tonumber(ARGV[4])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'last_error', ARGV[5], 'last_error_ms', now) end
if state == 'half_open' or state == 'open' then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_ms', now, 'failures', needed)
  return 'open'
end
local first = tonumber(redis.call('HGET', KEYS[1], 'first_failure_ms') or '0')
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
if failures == 0 or now - first > window then
  failures, first = 0, now
end
failures = failures + 1
redis.call('HSET', KEYS[1], 'failures', failures, 'first_failure_ms', first)
if failures >= needed then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_ms', now)
  return 'open'
end
return 'closed'
"""


# KEYS[1] = breaker hash. Read-only: the state and its times on Redis's clock.
_STATUS = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local fields = redis.call('HMGET', KEYS[1], 'state', 'opened_ms', 'probe_until_ms', 'last_error', 'failures')
return {fields[1] or 'closed', fields[2] or '0', fields[3] or '0', fields[4] or '', fields[5] or '0', now}
"""


class Verdict(enum.Enum):
    CLOSED = "closed"  # call as usual
    PROBE = "probe"  # the one half-open probe: call, and report the outcome
    OPEN = "open"  # skip this provider


@dataclass(frozen=True)
class BreakerSettings:
    failures_to_open: int = 3  # K
    window_s: float = 60.0  # the K failures must fall within this window
    cooldown_s: float = 30.0  # open this long before one probe may go
    probe_lease_s: float = 180.0  # a probe not reported by then is presumed dead; another may go

    def __post_init__(self) -> None:
        if self.failures_to_open < 1:
            raise ValueError("RENDER_BREAKER_FAILURES must be at least 1")
        if self.window_s <= 0 or self.cooldown_s < 0 or self.probe_lease_s <= 0:
            raise ValueError("RENDER_BREAKER_WINDOW_S must be positive and RENDER_BREAKER_COOLDOWN_S not negative")


@dataclass(frozen=True)
class BreakerStatus:
    """One provider's breaker as it stands: whether it may be called now, and if not, from when."""

    provider: str
    state: str  # closed | open | half_open
    failures: int
    retry_at: float  # Unix seconds from which a call may go (now, for a closed breaker)
    probe_due: bool  # open (or its probe lapsed) and the cool-down is over: one probe may go now
    last_error: str | None  # the last real error that counted against it, e.g. "connection refused (…)"

    @property
    def callable(self) -> bool:
        return self.state == "closed" or self.probe_due


class CircuitBreaker:
    """Breakers for all providers, under one Redis key prefix."""

    def __init__(self, client: redis.Redis, settings: BreakerSettings, *, prefix: str = "render:breaker") -> None:
        self.client = client
        self.settings = settings
        self.prefix = prefix
        self._allow = client.register_script(_ALLOW)
        self._failure = client.register_script(_FAILURE)
        self._status = client.register_script(_STATUS)

    def key(self, provider: str) -> str:
        return f"{self.prefix}:{provider}"

    def _args(self) -> list[int]:
        s = self.settings
        return [int(s.window_s * 1000), int(s.cooldown_s * 1000), int(s.probe_lease_s * 1000), s.failures_to_open]

    def allow(self, provider: str) -> Verdict:
        answer = self._allow(keys=[self.key(provider)], args=self._args())
        return Verdict(answer.decode() if isinstance(answer, bytes) else answer)

    def record_success(self, provider: str) -> None:
        self.client.delete(self.key(provider))

    def record_failure(self, provider: str, cause: str = "") -> bool:
        """Count a failure (`cause`: what it was, kept for the reasons of renders that skip the
        provider while it is open); True when the breaker is (now) open."""
        answer = self._failure(keys=[self.key(provider)], args=[*self._args(), cause[:200]])
        return (answer.decode() if isinstance(answer, bytes) else answer) == "open"

    def status(self, provider: str) -> BreakerStatus:
        raw = [item.decode() if isinstance(item, bytes) else item for item in self._status(keys=[self.key(provider)])]
        state, opened_ms, probe_until_ms, last_error, failures, now_ms = raw
        now_s, cooldown_s = int(now_ms) / 1000, self.settings.cooldown_s
        if state == "open":
            retry_at = int(opened_ms) / 1000 + cooldown_s
        elif state == "half_open":
            retry_at = int(probe_until_ms) / 1000  # the probe out there decides before then
        else:
            retry_at = now_s
        wall_now = time.time()  # Redis's clock for the arithmetic, this host's for the answer
        return BreakerStatus(
            provider=provider,
            state=str(state),
            failures=int(failures),
            retry_at=wall_now + max(0.0, retry_at - now_s),
            probe_due=state != "closed" and retry_at <= now_s,
            last_error=str(last_error) or None,
        )

    def state(self, provider: str) -> str:
        raw = self.client.hget(self.key(provider), "state")
        return raw.decode() if isinstance(raw, bytes) else (raw or "closed")


@dataclass(frozen=True)
class RouteAvailability:
    """The breakers of every provider a render may use, for deciding whether to start renders:
    all providers down means none can start; once a probe is due, one may (its call decides)."""

    statuses: tuple[BreakerStatus, ...]

    @property
    def up(self) -> bool:
        return not self.statuses or any(status.state == "closed" for status in self.statuses)

    @property
    def probe_due(self) -> bool:
        return not self.up and any(status.probe_due for status in self.statuses)

    @property
    def retry_at(self) -> float:
        return min((status.retry_at for status in self.statuses), default=time.time())

    def cause(self) -> str:
        return "; ".join(f"{status.provider}: {status.last_error or 'recent failures'}" for status in self.statuses)


def route_availability(breaker: CircuitBreaker, providers: list[str]) -> RouteAvailability:
    return RouteAvailability(tuple(breaker.status(provider) for provider in providers))
