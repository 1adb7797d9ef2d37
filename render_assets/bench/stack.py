"""The real stack for the benchmark: `dagster-daemon` on the project's workspace and an instance
file (the project's `dagster.yaml` by default), in a temporary DAGSTER_HOME, with Redis, the project
database and local storage.

The daemon starts in a session of its own, so its code server and run workers are found (and
stopped) as the members of that session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SENSOR_NAME = "render_job_sensor"
REQUIRED_DAEMONS = ("SENSOR", "QUEUED_RUN_COORDINATOR")
HEALTH_TIMEOUT_S = 240.0
TERMINATE_GRACE_S = 20.0
# Settings of the caller's shell the benchmark must not inherit: it sets its own.
CLEARED = ("CDN_BASE_URL", "GOOGLE_CLOUD_PROJECT", "STORAGE_EMULATOR_HOST", "SENTRY_DSN", "RENDER_MAX_CONCURRENT_RUNS")


class StackError(RuntimeError):
    """The stack did not come up; the message carries the daemon's log tail."""


@dataclass
class BenchStack:
    root: Path
    redis_url: str
    database_url: str
    provider_latency_s: float
    dagster_yaml: Path = PROJECT_ROOT / "dagster.yaml"
    # What the instance file reads from the environment (DAGSTER_PG_* for a PostgreSQL storage).
    instance_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.queue_name = f"bench-render-{uuid.uuid4().hex[:10]}"
        self.home = self.root / "dagster_home"
        self.log_path = self.root / "dagster-daemon.log"
        for folder in (self.home, self.root / "storage", self.root / "data"):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.dagster_yaml, self.home / "dagster.yaml")

    @property
    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in CLEARED}
        env.update(
            {
                "DAGSTER_HOME": str(self.home),
                "REDIS_URL": self.redis_url,
                "RENDER_QUEUE_NAME": self.queue_name,
                "DATABASE_URL": self.database_url,
                "RENDER_STORAGE_URL": (self.root / "storage").as_uri(),
                "RENDER_DATA_DIR": str(self.root / "data"),
                "RENDER_PROVIDERS": "local",
                "LOCAL_PROVIDER_LATENCY_S": str(self.provider_latency_s),
                "RENDER_SENSOR_INTERVAL_S": "1",
                "RENDER_DEFAULT_CREDITS": "100",
                "PYTHONUNBUFFERED": "1",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        env.update(self.instance_env)
        return env

    @property
    def session_id(self) -> int:
        if self.process is None:
            raise StackError("the daemon is not running")
        return self.process.pid

    def start(self) -> float:
        """Start the daemon and wait until the sensor ticks; returns the seconds it took."""
        initialize_instance(self.home)
        started = time.time()
        with self.log_path.open("ab") as log:
            self.process = daemon_process(self.env, log)
        self._wait_healthy(started)
        return time.time() - started

    def stop(self) -> None:
        """SIGTERM the daemon's process group, SIGKILL whatever is left after a grace period."""
        if self.process is None:
            return
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + TERMINATE_GRACE_S
        while (self.process.poll() is None or session_members(group)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in session_members(group):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self.process = None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no daemon log)"

    def _wait_healthy(self, started: float) -> None:
        from dagster import DagsterInstance

        assert self.process is not None
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        instance = DagsterInstance.from_config(str(self.home))
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise StackError(f"dagster-daemon exited with {self.process.returncode}:\n{self.log_tail()}")
                if "Error loading repository location" in self.log_tail(100_000):
                    raise StackError(f"the daemon could not load the code location:\n{self.log_tail()}")
                with contextlib.suppress(Exception):  # storage not created yet
                    beats = instance.get_daemon_heartbeats()
                    fresh = {name for name, beat in beats.items() if beat.timestamp >= started - 1}
                    if all(name in fresh for name in REQUIRED_DAEMONS) and sensor_ticked(instance, started):
                        return
                time.sleep(0.5)
        finally:
            instance.dispose()
        raise StackError(f"dagster-daemon not healthy after {HEALTH_TIMEOUT_S:.0f}s:\n{self.log_tail()}")


@contextlib.contextmanager
def running(stack: BenchStack) -> Iterator[BenchStack]:
    # The benchmark opens the instance itself too (health checks, partitions): with the same settings.
    with environment(stack.instance_env):
        stack.start()
        try:
            yield stack
        finally:
            stack.stop()
            drop_queue(stack.redis_url, stack.queue_name)


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """These variables set in this process while the block runs, the previous ones back after."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def session_members(session_id: int) -> list[int]:
    """Live processes of a session: the daemon, its code server and its run workers."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # state ppid pgrp session ...
        if len(fields) > 3 and int(fields[3]) == session_id and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def daemon_process(
    env: Mapping[str, str], log: IO[bytes], workspace: Path = PROJECT_ROOT / "workspace.yaml"
) -> subprocess.Popen[bytes]:
    """`dagster-daemon run` on a workspace (the project's by default), in a session of its own (so
    its code server and run workers can be found and stopped with it), writing to `log`."""
    daemon = shutil.which("dagster-daemon", path=env["PATH"])
    if daemon is None:
        raise StackError("dagster-daemon is not installed in this environment")
    return subprocess.Popen(
        [daemon, "run", "-w", str(workspace)],
        cwd=workspace.parent,  # `python -m` children put their working directory first on sys.path
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def initialize_instance(home: Path) -> None:
    # Create the storages (SQLite files, PostgreSQL tables) before the daemon and its code server
    # open them at the same moment (both would stamp alembic_version; the code server would refuse
    # to load).
    from dagster import DagsterInstance
    from dagster._core.scheduler.instigation import InstigatorType

    instance = DagsterInstance.from_config(str(home))
    try:
        instance.get_runs_count()
        instance.get_daemon_heartbeats()
        instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        instance.event_log_storage.get_asset_records()
    finally:
        instance.dispose()


def sensor_ticked(instance: object, since: float) -> bool:
    from dagster import DagsterInstance
    from dagster._core.scheduler.instigation import InstigatorType

    assert isinstance(instance, DagsterInstance)
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.name == SENSOR_NAME:
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
            if ticks and ticks[0].timestamp >= since:
                return True
    return False


def drop_queue(redis_url: str, queue_name: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"bull:{queue_name}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
