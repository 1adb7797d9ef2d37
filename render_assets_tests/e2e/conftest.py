"""The whole stack for end-to-end tests: the real Dagster daemon on the project's workspace, the
machine's Redis and PostgreSQL, and the web app's side of the queue (Node BullMQ, producer.mjs).

One daemon serves the whole session (`render_stack`), so tests share its queue, its database and
its storage: give every job a fresh renderId and every organization a fresh id.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from render_assets.bench.stack import daemon_process, drop_queue, initialize_instance, sensor_ticked, session_members
from render_assets.migrations import scratch_database
from render_assets_tests.conftest import POSTGRES_ADMIN_URL, REDIS_URL
from render_assets_tests.e2e.servers import PrivateRedis

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = PROJECT_ROOT / "workspace.yaml"
NODE_DIR = PROJECT_ROOT / "render_assets_tests" / "node"
PRODUCER = NODE_DIR / "producer.mjs"
BIN = Path(sys.executable).parent

HEALTH_TIMEOUT_S = 120.0
TERMINATE_GRACE_S = 20.0
REQUIRED_DAEMONS = ("SENSOR", "QUEUED_RUN_COORDINATOR")
SENSOR_NAME = "render_job_sensor"
LOAD_ERROR = "Error loading repository location"
# Variables of config.py the stack leaves at their defaults, whatever the caller's shell holds.
UNSET = (
    "CDN_BASE_URL",
    "GOOGLE_CLOUD_PROJECT",
    "LOCAL_PROVIDER_LATENCY_S",
    "RENDER_LOCK_DURATION_S",
    "RENDER_MAX_CONCURRENT_RUNS",
    "RENDER_DEPLOYMENT_ID",
    "STORAGE_EMULATOR_HOST",
)


def _executable(name: str) -> str:
    local = BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (looked in {BIN} and on PATH)")
    return found


@dataclass
class RenderStack:
    root: Path
    home: Path
    storage_dir: Path
    data_dir: Path
    log_path: Path
    queue_name: str
    redis_url: str
    database_url: str
    stack_env: dict[str, str]
    env: dict[str, str]
    workspace: Path = WORKSPACE
    process: subprocess.Popen[bytes] | None = None
    producer_runs: int = field(default=0)

    @property
    def storage_url(self) -> str:
        return self.stack_env["RENDER_STORAGE_URL"]

    def log_tail(self, lines: int = 120) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no daemon log)"
        return "\n".join(text.splitlines()[-lines:])

    def producer(self, jobs: list[dict[str, Any]], timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """Run the web app's side: add `jobs` ([{data, opts}]) and return every event it printed.

        The last event is `{"event": "timeout", ...}` when some job did not finish in time."""
        self.producer_runs += 1
        spec_path = self.root / f"producer-spec-{self.producer_runs}.json"
        spec = {
            "redisUrl": self.redis_url,
            "queueName": self.queue_name,
            "jobs": jobs,
            "timeoutMs": int(timeout_s * 1000),
        }
        spec_path.write_text(json.dumps(spec))
        completed = subprocess.run(
            [_executable("node"), str(PRODUCER), str(spec_path)],
            cwd=NODE_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s + 30,
            check=False,
        )
        (self.root / f"producer-events-{self.producer_runs}.jsonl").write_text(completed.stdout)
        events = [json.loads(line) for line in completed.stdout.splitlines() if line.strip().startswith("{")]
        if completed.returncode not in (0, 2):
            raise AssertionError(
                f"producer exited {completed.returncode}\nstderr:\n{completed.stderr}\n"
                f"stdout:\n{completed.stdout}\ndaemon log tail:\n{self.log_tail()}"
            )
        return events

    def bull_job(self, job_id: str) -> dict[str, Any] | None:
        """What BullMQ holds about a job now (read with BullMQ's Python client, not the project's)."""
        import asyncio

        from bullmq import Job, Queue

        async def read() -> dict[str, Any] | None:
            queue = Queue(self.queue_name, {"connection": self.redis_url})
            try:
                job = await Job.fromId(queue, job_id)
                if job is None:
                    return None
                return {
                    "state": str(await job.getState()),
                    "attemptsMade": int(job.attemptsMade or 0),
                    "attemptsStarted": int(getattr(job, "attemptsStarted", 0) or 0),
                    "attempts": int(job.opts.get("attempts") or 1),
                    "failedReason": job.failedReason,
                }
            finally:
                await queue.close()

        return asyncio.run(read())

    def start(self) -> float:
        """Start the daemon (again) and wait until its sensor ticks; returns the seconds it took."""
        started_at = time.time()
        with self.log_path.open("ab") as log:
            self.process = self.launch_daemon(log)
        ready_s = _wait_healthy(self, started_at)
        print(f"\n[render_stack] dagster-daemon healthy and sensor ticking after {ready_s:.1f}s (log {self.log_path})")
        return ready_s

    def launch_daemon(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        """The daemon's process on the stack's workspace, writing to `log`."""
        return daemon_process(self.env, log, self.workspace)

    def stop(self) -> list[int]:
        """Stop the daemon and everything it started; returns the processes that survived."""
        return _stop(self.process) if self.process is not None else []

    def kill(self) -> None:
        """`kill -9` the daemon, its code server and its run workers, as a crashed machine would."""
        assert self.process is not None
        for pid in session_members(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def run_worker_pid(self, run_id: str) -> int | None:
        """The process executing a run, as its own event log records it (every event carries a pid)."""
        from dagster import DagsterInstance

        instance = DagsterInstance.from_config(str(self.home))
        try:
            events = [entry.dagster_event for entry in instance.all_logs(run_id) if entry.step_key]
            pids = [event.pid for event in events if event is not None and event.pid]
        finally:
            instance.dispose()
        return pids[-1] if pids else None

    def render_assets(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """The project's CLI with the stack's environment."""
        return subprocess.run(
            [_executable("render-assets"), *args],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


def _wait_healthy(stack: RenderStack, started_at: float) -> float:
    """Until the daemon beats for the sensor and the run queue and the sensor has ticked since start."""
    from dagster import DagsterInstance

    assert stack.process is not None
    waited_from = time.monotonic()
    deadline = waited_from + HEALTH_TIMEOUT_S
    instance = DagsterInstance.from_config(str(stack.home))
    waiting_for, last_error = "daemon heartbeats", ""
    try:
        while time.monotonic() < deadline:
            if stack.process.poll() is not None:
                pytest.fail(
                    f"dagster-daemon exited with {stack.process.returncode} while starting; "
                    f"log tail:\n{stack.log_tail()}"
                )
            if LOAD_ERROR in stack.log_tail(lines=100_000):
                pytest.fail(f"the daemon could not load the code location; log tail:\n{stack.log_tail()}")
            try:
                beats = instance.get_daemon_heartbeats()
                fresh = {name for name, beat in beats.items() if beat.timestamp >= started_at - 1}
                if all(name in fresh for name in REQUIRED_DAEMONS):
                    waiting_for = f"the first tick of {SENSOR_NAME}"
                    if sensor_ticked(instance, started_at):
                        return time.monotonic() - waited_from
            except Exception as error:  # storage not created yet by the daemon
                last_error = f" (last error: {type(error).__name__}: {error})"
            time.sleep(0.5)
    finally:
        instance.dispose()
    pytest.fail(
        f"dagster-daemon not healthy after {HEALTH_TIMEOUT_S:.0f}s: waiting for {waiting_for}{last_error}\n"
        f"log tail:\n{stack.log_tail()}"
    )


def _stop(process: subprocess.Popen[bytes]) -> list[int]:
    """SIGTERM the daemon's process group, SIGKILL what is left after the grace period; returns
    the survivors (there should be none: code servers and run workers live in the same group)."""
    group = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + TERMINATE_GRACE_S
    while (process.poll() is None or session_members(group)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if process.poll() is None or session_members(group):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        for pid in session_members(group):  # anything that left the group but not the session
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    time.sleep(0.2)
    return session_members(group)


def build_stack(
    root: Path,
    database_url: str,
    *,
    redis_url: str = REDIS_URL,
    overrides: dict[str, str] | None = None,
    dagster_yaml: Path = PROJECT_ROOT / "dagster.yaml",
    queue_name: str | None = None,
    workspace: Path = WORKSPACE,
) -> RenderStack:
    """A stack's folders and environment; `start()` brings its daemon up (on `workspace`).
    `dagster_yaml`: the instance file; `queue_name`: a queue shared with another stack (default:
    one of its own)."""
    home, storage_dir, data_dir = root / "dagster_home", root / "storage", root / "data"
    for folder in (home, storage_dir, data_dir):
        folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dagster_yaml, home / "dagster.yaml")
    queue_name = queue_name or f"e2e-render-{uuid.uuid4().hex[:10]}"
    stack_env = {
        "DAGSTER_HOME": str(home),
        "RENDER_QUEUE_NAME": queue_name,
        "DATABASE_URL": database_url,
        "RENDER_STORAGE_URL": storage_dir.as_uri(),
        "RENDER_DATA_DIR": str(data_dir),
        "RENDER_SENSOR_INTERVAL_S": "1",
        "RENDER_DEFAULT_CREDITS": "100",
        "RENDER_PROVIDERS": "local",
        "REDIS_URL": redis_url,
        **(overrides or {}),
    }
    env = {key: value for key, value in os.environ.items() if key not in UNSET}
    env.update(stack_env)
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    initialize_instance(home)
    return RenderStack(
        root=root,
        home=home,
        storage_dir=storage_dir,
        data_dir=data_dir,
        log_path=root / "dagster-daemon.log",
        queue_name=queue_name,
        redis_url=redis_url,
        database_url=database_url,
        stack_env=stack_env,
        env=env,
        workspace=workspace,
    )


@contextlib.contextmanager
def running(stack: RenderStack) -> Iterator[RenderStack]:
    stack.start()
    try:
        yield stack
    finally:
        survivors = stack.stop()
        drop_queue(stack.redis_url, stack.queue_name)
        if survivors:
            pytest.fail(f"processes of the daemon's session survived teardown: {survivors}")


@pytest.fixture
def own_database_url() -> Iterator[str]:
    """A migrated database of the test's own on the machine's PostgreSQL, for a test that counts
    or faults everything in its database (stacks can share one: each settles its own claims)."""
    with scratch_database(POSTGRES_ADMIN_URL, "render_assets_e2e") as url:
        yield url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis of the test's own: crash it, or let its state (breakers) stay out of the shared one."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def render_stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[RenderStack]:
    with running(build_stack(tmp_path_factory.mktemp("render_stack"), postgres_url)) as stack:
        yield stack


def pytest_collection_finish(session: pytest.Session) -> None:
    """A session that will run the Docker deployment's tests starts building the image now."""
    if session.config.option.collectonly:
        return
    if any(item.path.name == "test_docker_deployment.py" for item in session.items):
        from render_assets_tests.e2e.docker_stack import IMAGE_BUILD

        IMAGE_BUILD.start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome: Any = yield
    report = outcome.get_result()
    stack = getattr(item, "funcargs", {}).get("render_stack")
    if report.failed and isinstance(stack, RenderStack):
        report.sections.append(("dagster-daemon log tail", stack.log_tail(200)))
