"""`ForkingRunLauncher`: each run in a process forked from a template that has already imported
Dagster and the code location, instead of a fresh interpreter per run.

Dagster's default launcher asks the code server to start a run; the code server starts a new
Python (multiprocessing "spawn") that imports Dagster and the project again, about 2 CPU-seconds
per run before any work. Here the launching process (the daemon) keeps a template through
multiprocessing's "forkserver": a process with no Python threads, started once, which imports
`render_assets.orchestration.instance.template` and forks a worker per run (`worker.run_worker`).

Single host by design: the worker runs where the daemon runs, with the daemon's Python and
environment. A code change reaches the next run without a restart: before each launch the
launcher compares the project's source files with those the template imported, and on a change
starts a new template once no worker of the old one is running (until then, a changed run starts
in a fresh interpreter, as Dagster's default launcher would). The worker records its pid on the
run, so `check_run_worker_health` (run monitoring) and `terminate` work from any process on the
host; the launching process also watches the workers it started and fails a run whose worker
exited before the run ended.

dagster.yaml:

    run_launcher:
      module: render_assets.orchestration.instance
      class: ForkingRunLauncher
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from multiprocessing import forkserver
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Self

from dagster import DagsterRun
from dagster._core.errors import DagsterLaunchFailedError
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._serdes import ConfigurableClass, ConfigurableClassData, serialize_value

from render_assets.orchestration.instance.worker import WORKER_TAG, WorkerId, run_worker

log = logging.getLogger(__name__)

# "__main__" first: the daemon's entry script, which every child would otherwise import again.
PRELOAD = ["__main__", "render_assets.orchestration.instance.template"]
# The code the template imports and runs: the project's package.
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the render_assets package


def source_fingerprint(root: Path = SOURCE_ROOT) -> str:
    """A digest of the names, sizes and modification times of the Python files under `root`:
    stat calls only (about a millisecond for the project), so it is taken at every launch."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class ForkingRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(PRELOAD)
        self._lock = threading.Lock()
        self._workers: dict[str, BaseProcess] = {}  # run id -> live worker started by this process
        self._template_source: str | None = None  # the fingerprint of the code the template imported
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        return cls(inst_data=inst_data)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None:
            raise DagsterLaunchFailedError(f"Run {run.run_id} has no job code origin to execute")
        if origin.executable_path and _environment_of(origin.executable_path) != _environment_of(sys.executable):
            # A fork runs the template's interpreter; a code location on another one needs its own launcher.
            raise DagsterLaunchFailedError(
                f"Run {run.run_id} is for Python {origin.executable_path}; this launcher forks {sys.executable}"
            )
        with self._lock:
            process = self._process_for(run.run_id, source_fingerprint())
            process.start()
            self._workers[run.run_id] = process
        threading.Thread(target=self._watch, args=(run.run_id, process), name="run-worker-watch", daemon=True).start()

    def _process_for(self, run_id: str, source: str) -> BaseProcess:
        """A worker process forked from a template that imported the current code (holding `_lock`)."""
        context: Any = self._context
        if self._template_source is None:
            self._template_source = source  # the first fork starts the template, which imports it now
        elif source != self._template_source:
            if not self._workers:
                # No worker depends on the old template (a forked worker's exit is reported through
                # it): stop it; the next fork starts a template that imports the changed code.
                forkserver._forkserver._stop()  # type: ignore[attr-defined]
                self._template_source = source
                log.info("the project's code changed: run workers fork from a new template")
            else:
                log.info("the project's code changed: run %s starts in a fresh interpreter", run_id)
                context = multiprocessing.get_context("spawn")
        process: BaseProcess = context.Process(
            target=run_worker,
            args=(run_id, serialize_value(self._instance.get_ref())),
            name=f"dagster-run-{run_id}",
        )
        return process

    def _watch(self, run_id: str, process: BaseProcess) -> None:
        """Once the worker exits, fail its run if it did not end (as the code server does for its own)."""
        process.join()
        with self._lock:
            self._workers.pop(run_id, None)
        try:
            run = self._instance.get_run_by_id(run_id)
            if run is not None and not run.is_finished:
                self._instance.report_run_failed(
                    run, f"Run worker (pid {process.pid}) {_describe_exit(process.exitcode)} before the run ended."
                )
        except Exception:  # storage unreachable: run monitoring (check_run_worker_health) catches it later
            log.exception("could not check the run of an exited run worker (run %s)", run_id)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = WorkerId.from_tag(run.tags.get(WORKER_TAG))
        if worker is None:
            # Not started by this launcher (an in-process execution, or an older launcher's run):
            # not ours to judge; max_runtime_seconds still ends it.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no forked run worker recorded for this run")
        if worker.is_alive():
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(worker.pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker (pid {worker.pid}) is not running", run_worker_id=str(worker.pid)
        )

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        pid = self._live_worker_pid(run)
        if pid is None:
            return False
        self._instance.report_run_canceling(run)
        # The worker takes SIGTERM as an interrupt: the run ends CANCELED, its hooks run.
        os.kill(pid, signal.SIGTERM)
        return True

    def join(self, timeout: int = 30) -> None:
        """Wait until the workers this process started have exited (tests)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                live = list(self._workers)
            if not live:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"run workers still running after {timeout}s: {live}")
            time.sleep(0.05)

    def _live_worker_pid(self, run: DagsterRun) -> int | None:
        worker = WorkerId.from_tag(run.tags.get(WORKER_TAG))
        if worker is None:  # just started: the worker has not recorded itself yet
            with self._lock:
                process = self._workers.get(run.run_id)
            worker = WorkerId(process.pid, None) if process is not None and process.pid is not None else None
        return worker.pid if worker is not None and worker.is_alive() else None


def _environment_of(executable: str) -> str:
    """The folder of a Python executable: a virtualenv's bin/ (python and python3 are the same)."""
    return os.path.dirname(os.path.abspath(executable))


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with code {exitcode}"
