"""The same pipeline without Dagster, in one long-lived process: claim from BullMQ, then the four
stages through the services with the same adapters the resources build. Its CPU per job is what
the work itself costs, so the stack's CPU per job divided by it is Dagster's overhead.

    python -m render_assets.bench.baseline --resolution 1024x1024 --count 3 --database-url URL

Prints one JSON object: CPU seconds per job (process time, all threads; the first job is a
warm-up and is not counted), wall seconds per job, and the CPU the imports cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

_started_cpu = time.process_time()

import redis  # noqa: E402

from render_assets.adapters.blob_storage import open_blob_store  # noqa: E402
from render_assets.adapters.bullmq_queue import BullQueue  # noqa: E402
from render_assets.adapters.event_stream import EventStream  # noqa: E402
from render_assets.bench.jobs import bench_job, web_app_options  # noqa: E402
from render_assets.persistence.database import Database  # noqa: E402
from render_assets.providers.budget import BudgetSettings, RetryBudget  # noqa: E402
from render_assets.providers.circuit_breaker import BreakerSettings, CircuitBreaker  # noqa: E402
from render_assets.providers.registry import ProviderSettings, build_providers  # noqa: E402
from render_assets.services import claims, delivery, generation, prompting, quality  # noqa: E402
from render_assets.services.backends import Backends  # noqa: E402
from render_assets.services.run_context import load_run  # noqa: E402

IMPORT_CPU_S = time.process_time() - _started_cpu


class BaselineError(RuntimeError):
    pass


def _no_gcs() -> Any:
    raise BaselineError("the baseline uses file:// storage only")


def render_one(database: Database, queue: BullQueue, client: redis.Redis, storage_url: str, resolution: str) -> None:
    data = bench_job(resolution, tag="baseline")
    queue.add(data, web_app_options(data))
    outcome = claims.claim_jobs(database, queue, 1, deployment="baseline")
    if len(outcome.runs) != 1:
        raise BaselineError(f"could not claim the job: {outcome}")
    claim = outcome.runs[0]
    run = load_run(database, claim.render_id, claim.run_key)
    store = open_blob_store(storage_url, public_base_url=None, gcs_client=_no_gcs)
    backends = Backends(database=database, queue=queue, storage=store, events=EventStream(queue.redis_url))
    built = prompting.prepare_prompt(run, backends)
    generated = generation.generate(
        run,
        build_providers("local", settings=ProviderSettings()),
        backends.progress,
        built,
        breaker=CircuitBreaker(client, BreakerSettings(), prefix="bench:baseline:breaker"),
        budget=RetryBudget(client, f"bench:baseline:budget:{uuid.uuid4().hex}", BudgetSettings()),
    )
    checked = quality.check_quality(run, backends, generated.image, prompt_hash=built.sha256)
    if checked.review_id is not None or checked.verdict.verdict == "fail":
        raise BaselineError(f"QA did not pass the image: {checked.verdict.verdict}")
    delivered = delivery.deliver(run, backends, generated.image, prompt_hash=built.sha256)
    if queue.state(claim.bull_job_id) != "completed" or not delivered.result["imageUrl"]:
        raise BaselineError("the job was not completed")


def measure(database_url: str, redis_url: str, resolution: str, count: int) -> dict[str, Any]:
    from render_assets.migrations import upgrade

    upgrade(database_url)
    database = Database(database_url)
    queue = BullQueue(redis_url, f"bench-baseline-{uuid.uuid4().hex[:10]}", lock_duration_ms=60_000)
    client = redis.Redis.from_url(redis_url)
    cpu, wall = [], []
    try:
        with tempfile.TemporaryDirectory() as folder:
            storage_url = Path(folder).as_uri()
            for index in range(count + 1):
                cpu_0, wall_0 = time.process_time(), time.perf_counter()
                render_one(database, queue, client, storage_url, resolution)
                if index:  # the first job warms caches (first SQL compile, first Lua script load)
                    cpu.append(time.process_time() - cpu_0)
                    wall.append(time.perf_counter() - wall_0)
    finally:
        keys = list(client.scan_iter(match=f"bull:{queue.queue_name}:*", count=500))
        if keys:
            client.delete(*keys)
        client.close()
        database.dispose()
    return {
        "resolution": resolution,
        "jobs": count,
        "cpu_s_per_job": round(statistics.mean(cpu), 3),
        "wall_s_per_job": round(statistics.mean(wall), 3),
        "import_cpu_s": round(IMPORT_CPU_S, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", default="1024x1024")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    print(json.dumps(measure(args.database_url, args.redis_url, args.resolution, args.count)))


if __name__ == "__main__":
    main()
