"""Acceptance of the Docker deployment: the image built by `make image` runs the code server, the
daemon (DockerRunLauncher) and the webserver, and every render in a container of its own, started
by the daemon. The web app's Node producer enqueues six jobs; one run's container is killed
mid-render (`docker kill`) and another run is terminated as the UI terminates it, and both jobs
still end delivered and charged once, with the ledger audit clean."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from dagster_docker.docker_run_launcher import DOCKER_CONTAINER_ID_TAG

from render_assets.domain.payload import parse_job
from render_assets.domain.queue_contract import job_options
from render_assets.migrations import scratch_database
from render_assets_tests.conftest import POSTGRES_ADMIN_URL, free_port
from render_assets_tests.e2e.conftest import running
from render_assets_tests.e2e.docker_stack import DockerStack, build_docker_stack, build_image, docker
from render_assets_tests.e2e.helpers import audit_is_clean, ledger, new_job, row, wait_for

pytestmark = [pytest.mark.e2e]

JOBS = 6
ENDED = ("SUCCESS", "FAILURE", "CANCELED")
BUCKET = "renders"
# A window to act in while a run generates (8 s), and reconciliation as often as the sensor
# daemon loops. Heartbeats keep their default (every 5 s, dead after 15): six containers starting
# at once starve a 2-core machine, and a shorter liveness took slow runs for dead ones.
SETTINGS = {"LOCAL_PROVIDER_LATENCY_S": "8", "RENDER_RECONCILE_INTERVAL_S": "5", "RENDER_CLAIM_GRACE_S": "60"}


@pytest.fixture(scope="module")
def docker_stack(tmp_path_factory: pytest.TempPathFactory, gcs_emulator: str) -> Iterator[DockerStack]:
    built_s = build_image()
    print(f"\n[docker] make image (in the background since the session began): {built_s:.1f}s")
    prefix = f"e2e-docker-{uuid.uuid4().hex[:8]}"
    with (
        scratch_database(POSTGRES_ADMIN_URL, "render_assets_e2e") as database_url,
        scratch_database(POSTGRES_ADMIN_URL, "render_assets_dagster", migrate=False) as dagster_database_url,
    ):
        stack = build_docker_stack(
            tmp_path_factory.mktemp("docker_stack"),
            database_url,
            dagster_database_url,
            code_server_port=free_port(),
            webserver_port=free_port(),
            settings={
                **SETTINGS,
                "RENDER_STORAGE_URL": f"gs://{BUCKET}/{prefix}",
                "STORAGE_EMULATOR_HOST": gcs_emulator,
            },
        )
        with running(stack):
            yield stack


def render_runs(stack: DockerStack) -> dict[str, dict[str, Any]]:
    """Run id → partition, status, container and (for a failed run) why, from Dagster's records."""
    instance = DagsterInstance.from_config(str(stack.home))
    try:
        return {
            run.run_id: {
                "render_id": run.tags.get("dagster/partition"),
                "status": run.status.value,
                "container": run.tags.get(DOCKER_CONTAINER_ID_TAG),
                "failure": [
                    entry.message for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)
                ],
            }
            for run in instance.get_runs(RunsFilter(job_name="render_job"))
        }
    finally:
        instance.dispose()


def disturb_while_generating(
    stack: DockerStack, instance: DagsterInstance, disturbances: dict[str, Callable[[DagsterRun], object]]
) -> dict[str, float]:
    """Disturb each render's run while it generates (watching them all at once: their windows may
    overlap); returns the seconds from each disturbance until its attempt was settled (its failure
    reached BullMQ, which then retries it)."""
    disturbed: dict[str, tuple[str, float]] = {}  # render id -> (BullMQ job id, when)
    seen: dict[str, list[tuple[str, ...]]] = {render_id: [] for render_id in disturbances}
    deadline = time.monotonic() + 180
    # Disturbances run beside the watch: terminating waits for the container to stop, and the
    # other render's window may pass meanwhile.
    with ThreadPoolExecutor(max_workers=len(disturbances)) as pool:
        done = []
        while len(disturbed) < len(disturbances):
            assert time.monotonic() < deadline, f"not seen generating: {seen}\n{stack.log_tail()}"
            for render_id, disturb in disturbances.items():
                run = None if render_id in disturbed else generating_run(stack, instance, render_id, seen[render_id])
                if run is not None:
                    done.append(pool.submit(disturb, run))
                    disturbed[render_id] = (run.tags["render/bull_job_id"], time.monotonic())
            time.sleep(0.05)
        for future in done:
            future.result()
    settled_after = {}
    for render_id, (job_id, at) in disturbed.items():
        wait_for(lambda: stack.bull_job(job_id)["attemptsMade"] >= 1, 120, f"{render_id} settled", stack, every_s=0.2)  # noqa: B023
        settled_after[render_id] = time.monotonic() - at
    return settled_after


def generating_run(
    stack: DockerStack, instance: DagsterInstance, render_id: str, seen: list[tuple[str, ...]]
) -> DagsterRun | None:
    """The render's run while it is generating (its row says so), else None; `seen` collects the
    states observed (for a failure's message)."""
    current = row(stack, render_id)
    if not current:
        return None
    found = instance.get_runs(RunsFilter(tags={"dagster/run_key": current["run_key"]}), limit=1)
    state = (current["status"], current["stage"], found[0].status.value if found else "no run")
    if not seen or seen[-1] != state:
        seen.append(state)
    working = found and found[0].status in (DagsterRunStatus.STARTING, DagsterRunStatus.STARTED)
    return found[0] if working and current["stage"] == "generating" else None


def test_one_image_serves_the_code_server_and_the_webserver_healthy(docker_stack: DockerStack) -> None:
    # The daemon's health (heartbeats, the sensor ticking) is what starting the stack waited for.
    healthy = wait_for(
        lambda: (
            {role: docker_stack.health(role) for role in ("code-server", "webserver")}
            if all(docker_stack.health(role) == "healthy" for role in ("code-server", "webserver"))
            else None
        ),
        120,
        "the image's health check to pass in the code server and webserver containers",
        docker_stack,
        every_s=1,
    )
    assert healthy == {"code-server": "healthy", "webserver": "healthy"}


def test_each_render_runs_in_a_container_of_its_own_and_killed_or_terminated_ones_still_settle(
    docker_stack: DockerStack,
) -> None:
    stack = docker_stack
    since = time.time()
    jobs = [new_job("org-docker") for _ in range(JOBS)]
    killed, terminated = jobs[0]["renderId"], jobs[1]["renderId"]

    with ThreadPoolExecutor(max_workers=1) as pool:
        producing = pool.submit(
            stack.producer, [{"data": data, "opts": job_options(parse_job(data))} for data in jobs], 300
        )
        with DagsterInstance.from_config(str(stack.home)) as instance:
            # While two renders generate (their containers busy rendering), kill the container of
            # one and terminate the other's run as the UI's "Terminate" does.
            settled_after = disturb_while_generating(
                stack,
                instance,
                {
                    killed: lambda run: docker("kill", run.tags[DOCKER_CONTAINER_ID_TAG]),
                    terminated: lambda run: instance.run_coordinator.cancel_run(run.run_id),
                },
            )
        events = producing.result()

    assert events[-1]["event"] != "timeout", f"{events[-1]}\n{stack.log_tail()}"
    completed = {event["returnvalue"]["renderId"]: event for event in events if event["event"] == "completed"}
    assert sorted(completed) == sorted(data["renderId"] for data in jobs)

    # Every run had a container of its own, which Docker started for that run. (BullMQ hears
    # of a delivery before its run has recorded its end: wait for the runs to end.)
    runs = wait_for(
        lambda: (found := render_runs(stack)) and all(run["status"] in ENDED for run in found.values()) and found,
        60,
        "the runs to end",
        stack,
    )
    statuses = {
        render_id: sorted(run["status"] for run in runs.values() if run["render_id"] == render_id)
        for render_id in completed
    }
    assert statuses[killed] == ["FAILURE", "SUCCESS"], runs
    assert statuses[terminated] == ["CANCELED", "SUCCESS"], runs
    assert all(
        statuses[render_id] == ["SUCCESS"] for render_id in completed if render_id not in (killed, terminated)
    ), runs
    containers = [run["container"] for run in runs.values()]
    assert all(containers) and len(set(containers)) == len(containers) == JOBS + 2, runs
    started = stack.started_run_containers(since)
    assert {run["container"]: run_id for run_id, run in runs.items()} == started
    wait_for(lambda: not stack.run_containers(), 30, "every run's container to be removed (auto_remove)", stack)

    # Delivered: the objects are in the bucket, each render charged once, the ledger consistent.
    from google.cloud import storage

    bucket = storage.Client().bucket(BUCKET)
    for render_id, event in completed.items():
        result = event["returnvalue"]
        for url in (result["imageUrl"], result["thumbnailUrl"]):
            assert bucket.blob(unquote(url.split(f"/{BUCKET}/", 1)[1])).exists(), url
        assert [kind for kind, _ in ledger(stack, render_id)] == ["charge"], render_id
        assert row(stack, render_id)["status"] == "completed"
        attempts = 2 if render_id in (killed, terminated) else 1
        assert stack.bull_job(event["jobId"])["attemptsMade"] == attempts
    audit_is_clean(stack)

    added = {event["jobId"]: event["at"] for event in events if event["event"] == "added"}
    latencies = [
        (event["at"] - added[event["jobId"]]) / 1000
        for render_id, event in completed.items()
        if render_id not in (killed, terminated)
    ]
    print(
        f"\n[docker] {JOBS} jobs in {len(runs)} containers; undisturbed enqueue → completed p50 "
        f"{statistics.median(latencies):.1f}s max {max(latencies):.1f}s; settled after: "
        f"killed {settled_after[killed]:.1f}s, terminated {settled_after[terminated]:.1f}s"
    )
