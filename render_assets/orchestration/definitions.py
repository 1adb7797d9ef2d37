"""The code location: assets, job, sensor and resources, configured from the environment."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from render_assets import config
from render_assets.observability.setup import setup_observability
from render_assets.orchestration.assets import RENDER_ASSETS
from render_assets.orchestration.io_managers import BlobIOManager
from render_assets.orchestration.jobs import render_job
from render_assets.orchestration.lineage import PROMPT_RULES
from render_assets.orchestration.resources import (
    BlobStorageResource,
    DatabaseResource,
    ProvidersResource,
    RenderQueueResource,
)
from render_assets.orchestration.resources.alerts import FailureAlertsResource
from render_assets.orchestration.resources.environment import env, required_env
from render_assets.orchestration.resources.webhooks import WebhooksResource
from render_assets.orchestration.sensors import reconcile_sensor, render_job_sensor
from render_assets.orchestration.sensors.failure_patterns import failure_pattern_sensor
from render_assets.orchestration.sensors.prompt_rules import prompt_rules_sensor
from render_assets.orchestration.sensors.retention import render_retention_sensor
from render_assets.orchestration.sensors.webhooks import webhook_sensor
from render_assets.services.backends import database_options, queue_options, storage_options


def build_resources() -> dict[str, object]:
    # The back-ends read the same options as the CLI and the progress server (services/backends.py);
    # a variable that is set reaches the resource as an EnvVar, so its value stays out of the UI.
    read = env
    storage = BlobStorageResource(**storage_options(read))
    database = DatabaseResource(**database_options(read))
    return {
        "database": database,
        "queue": RenderQueueResource(
            **queue_options(read),
            heartbeat_s=config.number(config.RENDER_HEARTBEAT_S),
            claim_wait_s=config.number(config.RENDER_CLAIM_WAIT_S),
            cancel_refund_after_generation=config.flag(config.RENDER_CANCEL_REFUND_AFTER_GENERATION),
            database=database,
        ),
        "providers": ProvidersResource(
            order=required_env(config.RENDER_PROVIDERS),
            local_latency_s=config.number(config.LOCAL_PROVIDER_LATENCY_S),
            redis_url=required_env(config.REDIS_URL),
            google_project=env(config.GOOGLE_CLOUD_PROJECT),
            google_region=required_env(config.GOOGLE_CLOUD_REGION),
            google_image_model=required_env(config.GOOGLE_IMAGE_MODEL),
            google_image_route=required_env(config.GOOGLE_IMAGE_ROUTE),
            google_upscale_model=env(config.GOOGLE_UPSCALE_MODEL),
            google_edit_model=required_env(config.GOOGLE_EDIT_MODEL),
            google_api_endpoint=env(config.GOOGLE_API_ENDPOINT),
            google_timeout_s=config.number(config.GOOGLE_IMAGE_TIMEOUT_S),
            openai_api_key=env(config.OPENAI_API_KEY),
            openai_image_model=required_env(config.OPENAI_IMAGE_MODEL),
            openai_base_url=env(config.OPENAI_BASE_URL),
            openai_timeout_s=config.number(config.OPENAI_IMAGE_TIMEOUT_S),
            job_deadline_s=config.number(config.RENDER_JOB_DEADLINE_S),
            breaker_failures=int(config.number(config.RENDER_BREAKER_FAILURES)),
            breaker_window_s=config.number(config.RENDER_BREAKER_WINDOW_S),
            breaker_cooldown_s=config.number(config.RENDER_BREAKER_COOLDOWN_S),
            outage_max_wait_s=config.number(config.RENDER_OUTAGE_MAX_WAIT_S),
            source_image_hosts=env(config.RENDER_SOURCE_IMAGE_HOSTS),
            source_image_max_bytes=int(config.number(config.RENDER_SOURCE_IMAGE_MAX_BYTES)),
            source_image_timeout_s=config.number(config.RENDER_SOURCE_IMAGE_TIMEOUT_S),
        ),
        "storage": storage,
        "io_manager": BlobIOManager(storage=storage),
        "alerts": FailureAlertsResource(
            webhook_url=env(config.SLACK_WEBHOOK_URL), patterns=config.FAILURE_PATTERNS.value()
        ),
        "webhooks": WebhooksResource(
            url=env(config.RENDER_WEBHOOK_URL),
            secret=env(config.RENDER_WEBHOOK_SECRET),
            timeout_s=config.number(config.RENDER_WEBHOOK_TIMEOUT_S),
            database=database,
        ),
    }


def build_definitions(resources: dict[str, object]) -> Definitions:
    return Definitions(
        assets=[PROMPT_RULES, *RENDER_ASSETS],
        jobs=[render_job],
        sensors=[
            render_job_sensor,
            reconcile_sensor,
            failure_pattern_sensor,
            render_retention_sensor,
            prompt_rules_sensor,
            webhook_sensor,
        ],
        resources=resources,
        executor=in_process_executor,
    )


setup_observability()  # logging, and Sentry when SENTRY_DSN is set
defs = build_definitions(build_resources())
