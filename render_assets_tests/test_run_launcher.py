"""The forking run launcher against a real instance (temp DAGSTER_HOME with the project's dagster.yaml),
real Redis and a real database: a render run in a forked worker, a killed worker, a terminated run.

The forkserver (the template) starts once per test process, with the environment this module sets.
"""

import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    OpExecutionContext,
    in_process_executor,
    job,
    op,
)
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.errors import DagsterLaunchFailedError
from dagster._core.events import DagsterEventType
from dagster._core.execution.api import create_execution_plan
from dagster._core.instance.config import dagster_instance_config
from dagster._core.launcher import WorkerStatus
from dagster._core.origin import JobPythonOrigin
from dagster._serdes import ConfigurableClassData

from render_assets.orchestration.instance import ForkingRunLauncher, forking
from render_assets.orchestration.instance.worker import WORKER_TAG, WorkerId
from render_assets_tests.bullmq_jobs import bull_job
from render_assets_tests.conftest import REDIS_URL
from render_assets_tests.payloads import web_app_job
from render_assets_tests.stack import InProcessStack

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEVELOPMENT_YAML = PROJECT_ROOT / "dagster.yaml"  # `make run` forks its run workers too
RUN_TIMEOUT_S = 90  # the first run also waits for the template to import everything


@op
def wait_for_release(context: OpExecutionContext) -> None:
    """Holds the run until the test writes the release file (or gives up after a minute)."""
    release = Path(str(context.run.tags["release_file"]))
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


@job(executor_def=in_process_executor)
def held_job() -> None:
    wait_for_release()


held_defs = Definitions(jobs=[held_job])


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[DagsterInstance]:
    """A Dagster home with the forking launcher, and the environment the run workers inherit."""
    root = tmp_path_factory.mktemp("forking")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copyfile(DEVELOPMENT_YAML, home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "DAGSTER_HOME": str(home),
            "REDIS_URL": REDIS_URL,
            "RENDER_QUEUE_NAME": f"launcher-{uuid.uuid4().hex[:10]}",  # its own: suites may share one Redis
            "DATABASE_URL": postgres_url,
            "RENDER_STORAGE_URL": (root / "storage").as_uri(),
            "RENDER_DATA_DIR": str(root / "data"),
            "RENDER_PROVIDERS": "local",
        }.items():
            env.setenv(name, value)
        for name in ("SENTRY_DSN", "LOCAL_PROVIDER_LATENCY_S", "GOOGLE_CLOUD_PROJECT", "CDN_BASE_URL"):
            env.delenv(name, raising=False)
        with DagsterInstance.from_config(str(home)) as dagster_instance:
            yield dagster_instance


def launcher_of(instance: DagsterInstance) -> ForkingRunLauncher:
    launcher = instance.run_launcher
    assert isinstance(launcher, ForkingRunLauncher)
    return launcher


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = RUN_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.05)


def run_of(instance: DagsterInstance, run_id: str) -> DagsterRun:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run


def create_held_run(instance: DagsterInstance, release_file: Path) -> DagsterRun:
    recon_job = ReconstructableRepository.for_module(
        __name__, "held_defs", working_directory=str(PROJECT_ROOT)
    ).get_reconstructable_job("held_job")
    job_def = recon_job.get_definition()
    return instance.create_run_for_job(
        job_def,
        execution_plan=create_execution_plan(job_def),
        tags={"release_file": str(release_file)},
        job_code_origin=recon_job.get_python_origin(),
    )


def started_held_run(instance: DagsterInstance, tmp_path: Path) -> tuple[DagsterRun, WorkerId]:
    run = create_held_run(instance, tmp_path / "release")
    instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]  # this launcher needs none
    wait_for(
        lambda: bool(instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_START)), "the run's step to start"
    )
    run = run_of(instance, run.run_id)
    worker = WorkerId.from_tag(run.tags.get(WORKER_TAG))
    assert worker is not None and worker.pid != os.getpid()
    return run, worker


def test_a_render_run_succeeds_in_a_forked_worker(instance: DagsterInstance, tmp_path: Path) -> None:
    stack = InProcessStack(
        instance=instance,
        database_url=os.environ["DATABASE_URL"],
        queue_name=os.environ["RENDER_QUEUE_NAME"],
        storage_url=os.environ["RENDER_STORAGE_URL"],
    )
    data = web_app_job(organization_id=f"org-launcher-{tmp_path.name}")
    bull_id = stack.enqueue(data)
    [request] = stack.tick().run_requests or []
    # The run as the daemon creates it from the sensor's request: the code location's origin.
    recon_job = ReconstructableRepository.for_module(
        "render_assets.orchestration.definitions", "defs", working_directory=str(PROJECT_ROOT)
    ).get_reconstructable_job("render_job")
    job_def = stack.definitions.resolve_job_def("render_job")
    tags = {**request.tags, "dagster/run_key": str(request.run_key), "dagster/partition": str(request.partition_key)}
    run = instance.create_run_for_job(
        job_def,
        execution_plan=create_execution_plan(job_def, tags=tags, instance_ref=instance.get_ref()),
        tags=tags,
        job_code_origin=recon_job.get_python_origin(),
    )

    instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]  # this launcher needs none
    wait_for(lambda: run_of(instance, run.run_id).is_finished, "the render run to end")
    launcher_of(instance).join(timeout=30)

    finished = run_of(instance, run.run_id)
    assert finished.status == DagsterRunStatus.SUCCESS, [e.message for e in instance.all_logs(run.run_id)][-5:]
    worker = WorkerId.from_tag(finished.tags.get(WORKER_TAG))
    assert worker is not None and worker.pid != os.getpid()
    step_pids = {entry.dagster_event.pid for entry in instance.all_logs(run.run_id) if entry.dagster_event}
    assert worker.pid in step_pids  # the steps ran in the worker it recorded
    assert not worker.is_alive()  # and it has exited (reaped by the template)
    materialized = instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    assert len(materialized) == 4
    job = bull_job(stack.queue_name, bull_id)
    assert job.finishedOn and job.returnvalue["renderId"] == data["renderId"]


def test_a_killed_worker_is_reported_unhealthy_and_its_run_fails(instance: DagsterInstance, tmp_path: Path) -> None:
    run, worker = started_held_run(instance, tmp_path)
    launcher = launcher_of(instance)
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING

    os.kill(worker.pid, signal.SIGKILL)
    wait_for(lambda: not worker.is_alive(), "the worker to die", timeout_s=10)

    # From the run's record alone, as run monitoring does after a daemon restart: a new launcher.
    fresh = ForkingRunLauncher()
    fresh.register_instance(instance)
    health = fresh.check_run_worker_health(run)
    assert health.status == WorkerStatus.FAILED and str(worker.pid) in (health.msg or "")
    # The launching process saw its worker die and failed the run without waiting for monitoring.
    wait_for(lambda: run_of(instance, run.run_id).is_finished, "the run to be failed", timeout_s=10)
    assert run_of(instance, run.run_id).status == DagsterRunStatus.FAILURE
    messages = [entry.message for entry in instance.all_logs(run.run_id)]
    assert any("was killed by SIGKILL" in message for message in messages), messages


def test_terminate_cancels_a_running_run(instance: DagsterInstance, tmp_path: Path) -> None:
    run, worker = started_held_run(instance, tmp_path)
    launcher = launcher_of(instance)

    assert launcher.terminate(run.run_id)

    wait_for(lambda: run_of(instance, run.run_id).is_finished, "the run to end", timeout_s=30)
    assert run_of(instance, run.run_id).status == DagsterRunStatus.CANCELED
    wait_for(lambda: not worker.is_alive(), "the worker to exit", timeout_s=10)
    assert not launcher.terminate(run.run_id)  # nothing left to stop


def test_a_run_without_a_code_origin_or_on_another_python_fails_to_launch(instance: DagsterInstance) -> None:
    orphan = instance.create_run_for_job(held_job)
    with pytest.raises(DagsterLaunchFailedError, match="no job code origin"):
        instance.launch_run(orphan.run_id, workspace=None)  # type: ignore[arg-type]
    assert run_of(instance, orphan.run_id).status == DagsterRunStatus.FAILURE

    recon_job = ReconstructableRepository.for_module(__name__, "held_defs").get_reconstructable_job("held_job")
    origin = recon_job.get_python_origin()
    elsewhere = origin._replace(
        repository_origin=origin.repository_origin._replace(executable_path="/opt/other/python")
    )
    assert isinstance(elsewhere, JobPythonOrigin)
    other = instance.create_run_for_job(held_job, job_code_origin=elsewhere)
    with pytest.raises(DagsterLaunchFailedError, match="/opt/other/python"):
        instance.launch_run(other.run_id, workspace=None)  # type: ignore[arg-type]


def test_worker_ids_tell_a_live_process_from_a_dead_or_reused_pid() -> None:
    me = WorkerId.of_current_process()
    assert WorkerId.from_tag(me.tag) == me and me.is_alive()
    if sys.platform == "linux":
        assert me.start_ticks is not None
        assert not WorkerId(me.pid, me.start_ticks + 1).is_alive()  # same pid, another process
    assert not WorkerId(2**22 + 7, None).is_alive()  # above pid_max: no such process
    assert WorkerId.from_tag("") is None and WorkerId.from_tag("not-a-pid") is None


@pytest.mark.parametrize("instance_file", ["deploy/dagster.production.yaml", "dagster.yaml"])
def test_the_instances_fork_their_run_workers(instance_file: str) -> None:
    path = PROJECT_ROOT / instance_file
    settings, _ = dagster_instance_config(str(path.parent), path.name)  # validates the whole file
    launcher = settings["run_launcher"]
    data = ConfigurableClassData(launcher["module"], launcher["class"], yaml.safe_dump(launcher.get("config") or {}))
    assert isinstance(data.rehydrate(ForkingRunLauncher), ForkingRunLauncher)


def _parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.skipif(sys.platform != "linux", reason="reads parent pids from /proc")
def test_a_code_change_reaches_the_next_run_without_a_restart(
    instance: DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launcher = launcher_of(instance)
    launcher.join(timeout=30)
    for name in ("first", "second", "third"):
        (tmp_path / name).mkdir()
    first, first_worker = started_held_run(instance, tmp_path / "first")
    old_template = _parent_pid(first_worker.pid)
    assert old_template != os.getpid()  # forked by the template, not by this process

    # The code changes while a worker of the old template runs: the next run gets a fresh interpreter.
    monkeypatch.setattr(forking, "source_fingerprint", lambda: "edited")
    second, second_worker = started_held_run(instance, tmp_path / "second")
    assert _parent_pid(second_worker.pid) == os.getpid()
    for run in (first, second):
        Path(run.tags["release_file"]).touch()
        wait_for(lambda run=run: run_of(instance, run.run_id).is_finished, "the held run to end")
    launcher.join(timeout=30)

    # No worker runs now: the old template is replaced by one that imports the changed code.
    third, third_worker = started_held_run(instance, tmp_path / "third")
    new_template = _parent_pid(third_worker.pid)
    assert new_template not in (old_template, os.getpid())
    Path(third.tags["release_file"]).touch()
    wait_for(lambda: run_of(instance, third.run_id).is_finished, "the held run to end")
    launcher.join(timeout=30)
    assert all(run_of(instance, run.run_id).status == DagsterRunStatus.SUCCESS for run in (first, second, third))
