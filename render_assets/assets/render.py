"""The four assets of a render. Each reads its render from the renders row (so backfills and
re-executions work without a BullMQ job), calls one stage, and describes the result."""

import dataclasses
from typing import Any

from dagster import AssetExecutionContext, Backoff, Failure, Jitter, MetadataValue, RetryPolicy, asset
from PIL import Image

from render_assets.domain.prompt import BuiltPrompt
from render_assets.partitions import render_partitions
from render_assets.resources import (
    BlobStorageResource,
    DatabaseResource,
    ProvidersResource,
    RenderQueueResource,
)
from render_assets.services import delivery, generation, prompting, quality
from render_assets.services.failures import RenderFailed
from render_assets.services.progress import ProgressPublisher
from render_assets.services.run_context import RenderRun, load_run

# Infrastructure hiccups (a dropped connection) are retried quickly inside the run.
INFRA_RETRY = RetryPolicy(max_retries=2, delay=0.5, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
# Provider failures that may pass (rate limits, timeouts) get longer pauses.
PROVIDER_RETRY = RetryPolicy(max_retries=2, delay=2.0, backoff=Backoff.EXPONENTIAL, jitter=Jitter.FULL)

COMMON: dict[str, Any] = {"partitions_def": render_partitions, "group_name": "render"}
JSON_VALUE = {"value_format": "json"}
IMAGE_VALUE = {"value_format": "png"}


def _render_run(context: AssetExecutionContext, database: DatabaseResource) -> RenderRun:
    return load_run(database.get(), context.partition_key, context.run.tags.get("dagster/run_key"))


def _publisher(database: DatabaseResource, queue: RenderQueueResource) -> ProgressPublisher:
    return ProgressPublisher(database.get(), queue.get())


def _failure(error: RenderFailed) -> Failure:
    # allow_retries=False skips the step's retry policy; the failure hook then settles the render,
    # and `permanent` tells it whether BullMQ may still try another attempt.
    return Failure(description=error.reason, allow_retries=error.retry_step, metadata={"permanent": error.permanent})


@asset(**COMMON, retry_policy=INFRA_RETRY, metadata=JSON_VALUE, kinds={"python"})
def render_prompt(
    context: AssetExecutionContext, database: DatabaseResource, queue: RenderQueueResource
) -> dict[str, Any]:
    """The design annotations as a prompt; charges the render's credits when a BullMQ job asked for it."""
    run = _render_run(context, database)
    try:
        built = prompting.prepare_prompt(
            run, database.get(), _publisher(database, queue), initial_credits=database.initial_credits
        )
    except RenderFailed as error:
        raise _failure(error) from None
    context.add_output_metadata(
        {
            "prompt_hash": built.sha256,
            "prompt_length": len(built.text),
            "seed": built.seed,
            "operator_run": run.is_operator_run,
            **{f"annotations_{kind}": count for kind, count in built.contributions.items()},
        }
    )
    return dataclasses.asdict(built)


@asset(**COMMON, retry_policy=PROVIDER_RETRY, metadata=IMAGE_VALUE, kinds={"python"})
def raw_render(
    context: AssetExecutionContext,
    render_prompt: dict[str, Any],
    database: DatabaseResource,
    queue: RenderQueueResource,
    providers: ProvidersResource,
) -> Image.Image:
    """The image from the first provider that delivers, at the requested resolution."""
    run = _render_run(context, database)
    try:
        generated = generation.generate(run, providers.get(), _publisher(database, queue), BuiltPrompt(**render_prompt))
    except RenderFailed as error:
        raise _failure(error) from None
    context.add_output_metadata(
        {
            "provider": generated.provider,
            "model": generated.model,
            "latency_s": round(generated.latency_s, 3),
            "cost_estimate_usd": generated.cost_estimate_usd,
            "width": generated.image.width,
            "height": generated.image.height,
        }
    )
    return generated.image


@asset(**COMMON, retry_policy=INFRA_RETRY, metadata=JSON_VALUE, kinds={"python"})
def qa_verdict(
    context: AssetExecutionContext, raw_render: Image.Image, database: DatabaseResource, queue: RenderQueueResource
) -> dict[str, Any]:
    """Checks that the image is the requested size and not blank; a failing image fails the run."""
    run = _render_run(context, database)
    try:
        verdict = quality.check_quality(run, _publisher(database, queue), raw_render)
    except RenderFailed as error:
        raise _failure(error) from None
    context.add_output_metadata({"verdict": verdict.verdict, "contrast": verdict.contrast})
    return dataclasses.asdict(verdict)


@asset(**COMMON, retry_policy=INFRA_RETRY, metadata=JSON_VALUE, kinds={"gcs"})
def cdn_image(
    context: AssetExecutionContext,
    raw_render: Image.Image,
    qa_verdict: dict[str, Any],
    render_prompt: dict[str, Any],
    database: DatabaseResource,
    queue: RenderQueueResource,
    storage: BlobStorageResource,
) -> dict[str, Any]:
    """The delivered image and thumbnail in storage, the renders row completed, the BullMQ job done."""
    run = _render_run(context, database)
    delivered = delivery.deliver(
        run,
        database.get(),
        storage.get(),
        queue.get(),
        _publisher(database, queue),
        raw_render,
        prompt_hash=render_prompt["sha256"],
    )
    result = delivered.result
    context.add_output_metadata(
        {
            "image_url": MetadataValue.url(result["imageUrl"]),
            "thumbnail_url": MetadataValue.url(result["thumbnailUrl"]),
            "file_size": result["metadata"]["fileSize"],
            "processing_time_ms": result["processingTime"],
            "qa_verdict": qa_verdict["verdict"],
        }
    )
    return result
