"""A terminated render run stops rendering.

`terminate` (the UI's Terminate button; a launcher stops the run's process, container or pod)
interrupts the run worker with SIGTERM, and Dagster retries an interrupted step that has a retry
policy, as every render step has: the run would go on to deliver as if nothing had happened, and
the launcher would kill it mid-step later. Within `stop_on_interrupt` an interrupt becomes a
failure that is not retried, so the failure hook settles the attempt at once (BullMQ retries the
render while attempts remain) and the run ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import Failure
from dagster._core.errors import DagsterExecutionInterruptedError

TERMINATED = "the run was terminated"


@contextmanager
def stop_on_interrupt() -> Iterator[None]:
    try:
        yield
    except (KeyboardInterrupt, DagsterExecutionInterruptedError) as interrupt:
        raise Failure(description=TERMINATED, allow_retries=False, metadata={"permanent": False}) from interrupt
