"""The pipeline in one test process: real Redis, a real database, real storage, a Dagster test
instance; the sensor is evaluated and its runs executed in-process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, Definitions, ExecuteInProcessResult, RunRequest, SensorResult, build_sensor_context
from dagster import instance_for_test as dagster_test_instance

from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.domain.payload import parse_job
from render_assets.domain.queue_contract import job_options
from render_assets.orchestration.definitions import build_definitions
from render_assets.orchestration.io_managers import BlobIOManager
from render_assets.orchestration.resources import (
    BlobStorageResource,
    DatabaseResource,
    ProvidersResource,
    RenderQueueResource,
)
from render_assets.orchestration.resources.alerts import FailureAlertsResource
from render_assets.orchestration.resources.webhooks import WebhooksResource
from render_assets.orchestration.sensors import render_job_sensor
from render_assets.orchestration.sensors.deployment import deployment_id
from render_assets.persistence.database import Database
from render_assets.persistence.models import CreditTransaction
from render_assets_tests.conftest import REDIS_URL


@dataclass
class InProcessStack:
    instance: DagsterInstance
    database_url: str
    queue_name: str
    storage_url: str
    providers: ProvidersResource = field(default_factory=ProvidersResource)
    initial_credits: int = 100
    webhook_url: str | None = None
    webhook_secret: str | None = None
    claim_wait_s: float = 0.0  # an idle tick returns at once unless a test asks it to wait

    @property
    def database(self) -> Database:
        return self.resources["database"].get()  # type: ignore[no-any-return]

    @property
    def deployment(self) -> str:
        return deployment_id(self.instance)

    @property
    def queue(self) -> BullQueue:
        return BullQueue(REDIS_URL, self.queue_name, lock_duration_ms=60_000)

    @property
    def resources(self) -> dict[str, Any]:
        storage = BlobStorageResource(url=self.storage_url)
        database = DatabaseResource(url=self.database_url, initial_credits=self.initial_credits)
        return {
            "database": database,
            "queue": RenderQueueResource(
                redis_url=REDIS_URL, queue_name=self.queue_name, database=database, claim_wait_s=self.claim_wait_s
            ),
            "providers": self.providers,
            "storage": storage,
            "io_manager": BlobIOManager(storage=storage),
            "alerts": FailureAlertsResource(),
            "webhooks": WebhooksResource(url=self.webhook_url, secret=self.webhook_secret, database=database),
        }

    @property
    def definitions(self) -> Definitions:
        return build_definitions(self.resources)

    def enqueue(self, data: dict[str, Any], **options: Any) -> str:
        opts = job_options(parse_job(data)) if options.get("web_app", True) else {}
        opts.update({key: value for key, value in options.items() if key != "web_app"})
        return self.queue.add(data, opts)

    def tick(self) -> SensorResult:
        with build_sensor_context(
            instance=self.instance, resources=self.resources, definitions=self.definitions
        ) as context:
            result = render_job_sensor(context)
        if isinstance(result, SensorResult):
            for event in result.asset_events or []:  # as the daemon does, before partitions and runs
                self.instance.report_runless_asset_event(event)
            for request in result.dynamic_partitions_requests or []:
                self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys or []))
            return result
        return SensorResult(run_requests=[])

    def execute(self, request: RunRequest | None = None, *, partition_key: str | None = None) -> ExecuteInProcessResult:
        """Run the render job as the daemon would for `request`, or as an operator re-run of a partition."""
        job = self.definitions.resolve_job_def("render_job")
        tags: dict[str, str] = {}
        if request is not None:
            partition_key = request.partition_key
            tags = {**request.tags, "dagster/run_key": str(request.run_key)}
        elif partition_key is not None:
            self.instance.add_dynamic_partitions("render_jobs", [partition_key])
        return job.execute_in_process(
            partition_key=partition_key,
            tags=tags,
            instance=self.instance,
            raise_on_error=False,
        )

    def run_all(self) -> list[ExecuteInProcessResult]:
        return [self.execute(request) for request in self.tick().run_requests or []]

    def ledger(self, render_id: str) -> list[tuple[str, int]]:
        """The render's credit transactions, (kind, amount), oldest first."""
        with self.database.session() as session:
            rows = session.query(CreditTransaction).filter_by(render_id=render_id).order_by(CreditTransaction.id)
            return [(row.kind, row.amount) for row in rows]


@contextmanager
def in_process_stack(
    database_url: str, queue_name: str, tmp_path: Path, *, max_concurrent_runs: int = 10, **kwargs: Any
) -> Iterator[InProcessStack]:
    run_queue = {
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"max_concurrent_runs": max_concurrent_runs},
        }
    }
    with dagster_test_instance(overrides=run_queue) as instance:
        yield InProcessStack(
            instance=instance,
            database_url=database_url,
            queue_name=queue_name,
            storage_url=(tmp_path / "storage").as_uri(),
            **kwargs,
        )
