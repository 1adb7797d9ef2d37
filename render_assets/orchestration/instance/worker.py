"""The run worker's side of the forking launcher: what runs in a process forked from the template.

It does what `dagster api execute_run` does (dagster/_cli/api.py): the instance from its ref,
the job reconstructed from the run's code origin, `core_execute_run` with its status transitions
and engine events, SIGTERM as an interrupt (so `terminate` cancels the run). First it records its
pid and start time on the run (tag `WORKER_TAG`), before the run can be STARTED, so run
monitoring and `terminate` find it from any process, also after the daemon restarted.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from pathlib import Path

from render_assets.adapters.proc_stat import read_stat

# Tag on a run: "<pid>:<start time in clock ticks since boot>" of its worker. The start time tells
# a live worker from an unrelated process that was given the same pid later.
WORKER_TAG = "render_assets/run_worker"


@dataclass(frozen=True)
class WorkerId:
    pid: int
    start_ticks: int | None  # None where /proc is not available

    @classmethod
    def of_current_process(cls) -> WorkerId:
        pid = os.getpid()
        return cls(pid, process_start_ticks(pid))

    @classmethod
    def from_tag(cls, value: str | None) -> WorkerId | None:
        if not value:
            return None
        pid, _, ticks = value.partition(":")
        try:
            return cls(int(pid), int(ticks) if ticks else None)
        except ValueError:
            return None

    @property
    def tag(self) -> str:
        return f"{self.pid}:{'' if self.start_ticks is None else self.start_ticks}"

    def is_alive(self) -> bool:
        """Whether this very process still runs (a zombie does not: it has exited)."""
        stat = read_stat(self.pid)
        if stat is None:
            if Path("/proc/self/stat").exists():
                return False  # Linux and no such process
            try:  # no /proc (macOS): liveness of the pid only
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        if stat.state in ("Z", "X"):
            return False
        return self.start_ticks is None or stat.start_ticks == self.start_ticks


def process_start_ticks(pid: int) -> int | None:
    stat = read_stat(pid)
    return stat.start_ticks if stat else None


def run_worker(run_id: str, serialized_instance_ref: str) -> None:
    """The target of a forked run worker process."""
    from dagster import DagsterInstance
    from dagster._cli.api import _execute_run_command_body
    from dagster._core.instance import InstanceRef
    from dagster._serdes import deserialize_value
    from dagster._utils.interrupts import capture_interrupts, setup_interrupt_handlers

    setup_interrupt_handlers()  # SIGTERM interrupts the run like SIGINT, as in `dagster api execute_run`
    try:
        with (
            capture_interrupts(),
            DagsterInstance.from_ref(deserialize_value(serialized_instance_ref, InstanceRef)) as instance,
        ):
            instance.add_run_tags(run_id, {WORKER_TAG: WorkerId.of_current_process().tag})
            _execute_run_command_body(run_id, instance, lambda _event: None, set_exit_code_on_failure=False)
    finally:
        # A forked child leaves with os._exit: run what an interpreter runs at exit (Sentry's
        # flush of the run's last events, logging.shutdown).
        atexit._run_exitfuncs()
