"""The run key of a customer's run: `<renderId>:<bullJobId>:<attemptsMade>[.r<redeliveries>]`.

Dagster starts one run per run key, so the key names exactly one claim: the render, its BullMQ
job, the attempt BullMQ counts and, when BullMQ redelivered a stalled job, the redelivery (so it
does not collide with the lost run's key). Built when a job is claimed, read back by whatever
needs the attempt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ATTEMPT = re.compile(r"(?P<made>\d+)(?:\.r(?P<redeliveries>\d+))?")


@dataclass(frozen=True)
class RunKey:
    render_id: str
    bull_job_id: str
    attempts_made: int  # BullMQ's attemptsMade when the job was claimed
    redeliveries: int = 0

    def __str__(self) -> str:
        attempt = f"{self.attempts_made}" if self.redeliveries <= 0 else f"{self.attempts_made}.r{self.redeliveries}"
        return f"{self.render_id}:{self.bull_job_id}:{attempt}"

    @property
    def attempt(self) -> int:
        """The 1-based BullMQ attempt."""
        return self.attempts_made + 1

    @classmethod
    def parse(cls, text: str) -> RunKey | None:
        """None for text that is no run key of ours."""
        # A render id has no colon (domain/object_keys.SAFE_ID); a BullMQ job id may.
        render_id, _, rest = text.partition(":")
        bull_job_id, _, attempt = rest.rpartition(":")
        matched = _ATTEMPT.fullmatch(attempt)
        if not render_id or not bull_job_id or matched is None:
            return None
        return cls(render_id, bull_job_id, int(matched["made"]), int(matched["redeliveries"] or 0))
