"""The code location: assets, job, sensor and resources, configured from the environment."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from render_assets import config
from render_assets.assets import RENDER_ASSETS
from render_assets.io_managers import BlobIOManager
from render_assets.jobs import render_job
from render_assets.resources import (
    BlobStorageResource,
    DatabaseResource,
    ProvidersResource,
    RenderQueueResource,
)
from render_assets.sensors import render_job_sensor


def build_resources() -> dict[str, object]:
    storage = BlobStorageResource(
        url=config.RENDER_STORAGE_URL.resource_value() or config.storage_url(),
        public_base_url=config.CDN_BASE_URL.resource_value(),
        gcp_project=config.GOOGLE_CLOUD_PROJECT.resource_value(),
    )
    return {
        "database": DatabaseResource(
            url=config.DATABASE_URL.resource_value() or config.database_url(),
            initial_credits=int(config.number(config.RENDER_DEFAULT_CREDITS)),
        ),
        "queue": RenderQueueResource(
            redis_url=config.REDIS_URL.required_resource_value(),
            queue_name=config.RENDER_QUEUE_NAME.required_resource_value(),
            lock_duration_s=config.number(config.RENDER_LOCK_DURATION_S),
        ),
        "providers": ProvidersResource(
            order=config.RENDER_PROVIDERS.required_resource_value(),
            local_latency_s=config.number(config.LOCAL_PROVIDER_LATENCY_S),
        ),
        "storage": storage,
        "io_manager": BlobIOManager(storage=storage),
    }


def build_definitions(resources: dict[str, object]) -> Definitions:
    return Definitions(
        assets=RENDER_ASSETS,
        jobs=[render_job],
        sensors=[render_job_sensor],
        resources=resources,
        executor=in_process_executor,
    )


defs = build_definitions(build_resources())
