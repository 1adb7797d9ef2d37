"""Per-render Redis streams of progress events: appended by the worker, read by the progress server.

Each render has a stream `<prefix><renderId>`, capped (`MAXLEN ~`) and expiring (`EXPIRE`, renewed
by every append), whose entry ids are the SSE event ids a browser resumes from. One Lua script
appends an entry and, in the same round trip, adds the time the render spent in the stage it just
left to a stage-latency histogram (a hash beside the streams), so `/metrics` can report stage
latencies without scanning streams.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

import redis
from redis.commands.core import Script

from render_assets.persistence.progress_events import ProgressEvent

DEFAULT_PREFIX = "render-events:"
# Upper bounds (milliseconds) of the stage-latency histogram's buckets; +Inf is the count.
STAGE_BUCKETS_MS: tuple[int, ...] = (100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000)
# '@' cannot occur in a render id, so this hash never collides with a render's stream.
STATS_SUFFIX = "@stage-latency"

_ENTRY_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")

# KEYS[1] the render's stream, KEYS[2] the latency hash.
# ARGV: maxlen, ttl seconds, event, stage, data, bucket bounds (ms)…
# Each entry carries `stage_ms`, when its stage began: a repeated stage (a step retried, a
# `progress` event) keeps the earlier start, and leaving a stage records now - stage_ms for it.
_APPEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local previous = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev_stage, prev_start
if #previous == 1 then
  local fields = previous[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'stage' then prev_stage = fields[i + 1]
    elseif fields[i] == 'stage_ms' then prev_start = tonumber(fields[i + 1]) end
  end
end
local started = now
if prev_stage == ARGV[4] and prev_start then started = prev_start end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
  'event', ARGV[3], 'stage', ARGV[4], 'stage_ms', string.format('%d', started), 'data', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if prev_stage and prev_start and prev_stage ~= ARGV[4] then
  local elapsed = math.max(now - prev_start, 0)
  redis.call('HINCRBY', KEYS[2], prev_stage .. '|count', 1)
  redis.call('HINCRBY', KEYS[2], prev_stage .. '|sum_ms', string.format('%d', elapsed))
  for i = 6, #ARGV do
    if elapsed <= tonumber(ARGV[i]) then redis.call('HINCRBY', KEYS[2], prev_stage .. '|le|' .. ARGV[i], 1) end
  end
end
return id
"""


def entry_id_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a sortable pair; ValueError when the text is not one."""
    match = _ENTRY_ID.match(entry_id)
    if match is None:
        raise ValueError(f"not a stream entry id: {entry_id[:40]!r}")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class StreamKeys:
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix:
            raise ValueError("RENDER_EVENTS_PREFIX must not be empty")

    def stream(self, render_id: str) -> str:
        return f"{self.prefix}{render_id}"

    @property
    def stage_latency(self) -> str:
        return f"{self.prefix}{STATS_SUFFIX}"


@cache
def _append_script(redis_url: str) -> Script:
    # One connection pool per process and URL, however many publishers the steps create.
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    return client.register_script(_APPEND)


class EventStream:
    """The writing side: one capped, expiring stream per render."""

    def __init__(self, redis_url: str, *, prefix: str = DEFAULT_PREFIX, maxlen: int = 1_000, ttl_s: int = 86_400):
        if maxlen < 1:
            raise ValueError(f"RENDER_EVENTS_MAXLEN must be at least 1, got {maxlen}")
        if ttl_s < 1:
            raise ValueError(f"RENDER_EVENTS_TTL_S must be at least 1 second, got {ttl_s}")
        self.keys = StreamKeys(prefix)
        self.maxlen = maxlen
        self.ttl_s = ttl_s
        self._redis_url = redis_url

    def append(self, render_id: str, event: ProgressEvent) -> str:
        """Append one event; returns its entry id (the SSE id browsers resume from)."""
        entry_id = _append_script(self._redis_url)(
            keys=[self.keys.stream(render_id), self.keys.stage_latency],
            args=[
                self.maxlen,
                self.ttl_s,
                event.kind.value,
                str(event.data.get("stage", "")),
                json.dumps(event.data, separators=(",", ":"), default=str),
                *STAGE_BUCKETS_MS,
            ],
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
