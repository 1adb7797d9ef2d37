"""The four assets of a render. Each reads its render from the renders row (so backfills and
re-executions work without a BullMQ job), calls one stage, and describes the result."""

import dataclasses
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetObservation,
    Backoff,
    Failure,
    Jitter,
    MetadataValue,
    Output,
    RetryPolicy,
    asset,
)
from PIL import Image

from render_assets.domain.prompt import BuiltPrompt
from render_assets.observability.instrumentation import observe_stage
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
# Provider failures that may pass (rate limits, outages) get longer pauses. Only transient ones are
# retried (others raise Failure(allow_retries=False)), and every retry spends the run's one budget.
PROVIDER_RETRY = RetryPolicy(max_retries=2, delay=2.0, backoff=Backoff.EXPONENTIAL, jitter=Jitter.FULL)

COMMON: dict[str, Any] = {"partitions_def": render_partitions, "group_name": "render"}
JSON_VALUE = {"value_format": "json"}
IMAGE_VALUE = {"value_format": "png"}


def _render_run(context: AssetExecutionContext, database: DatabaseResource) -> RenderRun:
    tags = context.run.tags
    run = load_run(
        database.get(), context.partition_key, tags.get("dagster/run_key"), reexecution="dagster/parent_run_id" in tags
    )
    if run.superseded:
        raise _failure(RenderFailed("this attempt was already settled as failed; stopping", permanent=True))
    return run


def _publisher(database: DatabaseResource, queue: RenderQueueResource) -> ProgressPublisher:
    return ProgressPublisher(database.get(), queue.get(), queue.events())


def _failure(error: RenderFailed) -> Failure:
    # allow_retries=False skips the step's retry policy; the failure hook then settles the render,
    # and `permanent` tells it whether BullMQ may still try another attempt.
    return Failure(description=error.reason, allow_retries=error.retry_step, metadata={"permanent": error.permanent})


@asset(**COMMON, retry_policy=INFRA_RETRY, metadata=JSON_VALUE, kinds={"python"})
@observe_stage
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
            # Hash, length and counts only: the prompt quotes user text, which stays out of metadata.
            "prompt_hash": built.sha256,
            "prompt_length": len(built.text),
            "negative_prompt_length": len(built.negative),
            "seed": built.seed,
            "attempt": built.attempt,
            "style": built.style,
            "quality_level": built.quality_level,
            "plants_matched": built.plants_matched,
            "environment_overrides": ", ".join(built.environment_overrides) or "none",
            "operator_run": run.is_operator_run,
            **{f"annotations_{kind}": count for kind, count in built.contributions.items()},
            **{f"elements_{category}": count for category, count in built.categories.items()},
        }
    )
    return dataclasses.asdict(built)


@asset(**COMMON, retry_policy=PROVIDER_RETRY, metadata=IMAGE_VALUE, kinds={"python"}, pool="image_providers")
@observe_stage
def raw_render(
    context: AssetExecutionContext,
    render_prompt: dict[str, Any],
    database: DatabaseResource,
    queue: RenderQueueResource,
    providers: ProvidersResource,
) -> Image.Image:
    """The image from the preferred provider, or the next that delivers, at exactly the requested size."""
    run = _render_run(context, database)
    try:
        try:
            configured = providers.get()
        except ValueError as error:  # a provider named in RENDER_PROVIDERS lacks its settings
            context.log.error(f"provider configuration: {error}")
            raise RenderFailed(f"image providers are misconfigured: {error}", permanent=False) from None
        generated = generation.generate(
            run,
            configured,
            _publisher(database, queue),
            BuiltPrompt(**render_prompt),
            breaker=providers.breaker(),
            # One budget per run: Dagster's retries of this step continue it rather than start afresh.
            budget=providers.budget(context.run_id),
            source_images=providers.source_images(),
        )
    except RenderFailed as error:
        raise _failure(error) from None
    native = generated.native_size or generated.image.size
    context.add_output_metadata(
        {
            "provider": generated.provider,
            "model": generated.model,
            "seed": generated.seed,
            "latency_s": round(generated.latency_s, 3),
            "attempts": generated.attempts,
            "failovers": generated.failovers,
            "cost_estimate_usd": generated.cost_estimate_usd,
            "native_size": f"{native[0]}x{native[1]}",
            "upscale_method": generated.upscale_method,
            "reference_image": generated.facts.get("reference_image", "none"),
            "width": generated.image.width,
            "height": generated.image.height,
        }
    )
    return generated.image


@asset(**COMMON, retry_policy=INFRA_RETRY, metadata=JSON_VALUE, kinds={"python"}, output_required=False)
@observe_stage
def qa_verdict(
    context: AssetExecutionContext,
    raw_render: Image.Image,
    database: DatabaseResource,
    queue: RenderQueueResource,
    storage: BlobStorageResource,
    providers: ProvidersResource,
) -> Iterator[Output[dict[str, Any]]]:
    """Decodes, format, size, blank, exposure, detail, known failure images and duplicates of the
    organization's earlier renders (not when it edits the customer's photo). A failing image
    fails the run (BullMQ retries with a new seed); a borderline one is held for manual review:
    no value, so cdn_image does not run."""
    run = _render_run(context, database)
    try:
        outcome = quality.check_quality(
            run,
            database.get(),
            storage.get(),
            queue.get(),
            _publisher(database, queue),
            raw_render,
            from_customer_photo=bool(providers.source_hosts()),
        )
    except RenderFailed as error:
        failed = getattr(error, "verdict", None)
        measures = failed.measures() if failed is not None else {}
        raise Failure(
            description=error.reason,
            allow_retries=error.retry_step,
            metadata={"permanent": error.permanent, "qa_score": measures.get("score", 0.0), **measures},
        ) from None
    verdict = outcome.verdict
    metadata: dict[str, Any] = {"verdict": verdict.verdict, "phash": verdict.phash, **verdict.measures()}
    if outcome.review_id is not None:
        context.log_event(
            AssetObservation(
                asset_key=context.asset_key,
                partition=context.partition_key,
                metadata={**metadata, "review_id": outcome.review_id, "reasons": "; ".join(verdict.reasons)},
            )
        )
        return
    yield Output(dataclasses.asdict(verdict), metadata=metadata)


@asset(**COMMON, retry_policy=INFRA_RETRY, metadata=JSON_VALUE, kinds={"gcs"})
@observe_stage
def cdn_image(
    context: AssetExecutionContext,
    raw_render: Image.Image,
    qa_verdict: dict[str, Any],
    render_prompt: dict[str, Any],
    database: DatabaseResource,
    queue: RenderQueueResource,
    storage: BlobStorageResource,
) -> dict[str, Any]:
    """The master, web and thumbnail variants in storage, the renders row completed, the BullMQ job done."""
    run = _render_run(context, database)
    store = storage.get()
    try:
        delivered = delivery.deliver(
            run,
            database.get(),
            store,
            queue.get(),
            _publisher(database, queue),
            raw_render,
            prompt_hash=render_prompt["sha256"],
        )
    except RenderFailed as error:
        raise _failure(error) from None
    result, variants = delivered.result, delivered.variants
    context.add_output_metadata(
        {
            "thumbnail": MetadataValue.md(delivery.thumbnail_markdown(store, variants.thumbnail)),
            "image_url": MetadataValue.url(result["imageUrl"]),
            "web_image_url": MetadataValue.url(result["webImageUrl"]),
            "thumbnail_url": MetadataValue.url(result["thumbnailUrl"]),
            "objects": MetadataValue.json(
                {stored.variant.value: {"key": stored.key, "bytes": stored.size} for stored in variants.all}
            ),
            "file_size": result["metadata"]["fileSize"],
            "delivery_s": round(variants.seconds, 3),
            "processing_time_ms": result["processingTime"],
            "qa_verdict": qa_verdict["verdict"],
        }
    )
    return result
