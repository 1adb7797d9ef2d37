"""The four assets of a render, after the prompt rules it is built from (an observed source).

Each reads its render from the renders row (so backfills and re-executions work without a BullMQ
job), calls one stage, and describes the result. Code versions say what decides each output
(`code_versions.py`), and data versions carry the rest: `render_prompt`'s is its prompt and seed,
so a prompt that comes out identical leaves the image fresh. The failure hook sits on every asset,
so backfills and the UI's "Materialize" (Dagster's asset job) are settled like the render job.
"""

import dataclasses
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    Backoff,
    DataVersion,
    Failure,
    Jitter,
    MetadataValue,
    Output,
    PreviewWarning,
    RetryPolicy,
    asset,
)
from PIL import Image

from render_assets.domain import imaging
from render_assets.domain.prompt import BuiltPrompt
from render_assets.orchestration import code_versions, lineage
from render_assets.orchestration.hooks import settle_failed_render
from render_assets.orchestration.instrumentation import observe_stage
from render_assets.orchestration.io_managers import stored_value_key
from render_assets.orchestration.partitions import render_partitions
from render_assets.orchestration.resources import (
    BlobStorageResource,
    DatabaseResource,
    ProvidersResource,
    RenderQueueResource,
)
from render_assets.orchestration.resources.webhooks import WebhooksResource
from render_assets.orchestration.run_identity import RunIdentity, label_run
from render_assets.persistence import render_versions
from render_assets.persistence.render_versions import VersionFacts
from render_assets.services import delivery, generation, outages, prompting, quality
from render_assets.services.failures import ProvidersUnavailable, RenderFailed
from render_assets.services.run_context import RenderRun, load_run

# Infrastructure hiccups (a dropped connection) are retried quickly inside the run.
INFRA_RETRY = RetryPolicy(max_retries=2, delay=0.5, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
# Provider failures that may pass (rate limits, outages) get longer pauses. Only transient ones are
# retried (others raise Failure(allow_retries=False)), and every retry spends the run's one budget.
PROVIDER_RETRY = RetryPolicy(max_retries=2, delay=2.0, backoff=Backoff.EXPONENTIAL, jitter=Jitter.FULL)

COMMON: dict[str, Any] = {"partitions_def": render_partitions, "group_name": "render", "hooks": {settle_failed_render}}
JSON_VALUE = {"value_format": "json"}
IMAGE_VALUE = {"value_format": "png"}
PROMPT_RULES = lineage.PROMPT_RULES
RAW_RENDER_VERSION = code_versions.raw_render_version()
QA_CHECK = "quality"
RAW_RENDER_DATA = "raw_render_data"  # in a version's code_versions: the raw image it was made from
with warnings.catch_warnings():
    # Partitioned checks are a Dagster preview (1.13); one result per render is what we want.
    warnings.simplefilter("ignore", PreviewWarning)
    QA_CHECK_SPEC = AssetCheckSpec(
        QA_CHECK,
        asset="qa_verdict",
        partitions_def=render_partitions,
        blocking=False,
        description="QA's verdict on the render's image: pass, review (held for a person) or fail, with the score",
    )


def _render_run(context: AssetExecutionContext, database: DatabaseResource) -> RenderRun:
    identity = RunIdentity.of(context.run)
    try:
        run = load_run(
            database.get(),
            context.partition_key,
            identity.claim_run_key,
            operator=identity.is_operator_run,
        )
    except RenderFailed as error:
        raise _failure(error) from None
    if run.superseded:
        raise _failure(RenderFailed(run.superseded, permanent=True))
    job = run.job
    label_run(
        context.instance,
        context.run,
        identity.tags(organization_id=job.organizationId, project_id=job.projectId, tier=job.subscriptionTier),
    )
    return run


def _failure(error: RenderFailed) -> Failure:
    # allow_retries=False skips the step's retry policy; the failure hook then settles the render,
    # and `permanent` tells it whether BullMQ may still try another attempt.
    return Failure(description=error.reason, allow_retries=error.retry_step, metadata={"permanent": error.permanent})


@asset(
    **COMMON,
    deps=[PROMPT_RULES],
    code_version=code_versions.render_prompt_version(),
    retry_policy=INFRA_RETRY,
    metadata=JSON_VALUE,
    kinds={"python"},
)
@observe_stage
def render_prompt(
    context: AssetExecutionContext, database: DatabaseResource, queue: RenderQueueResource
) -> Output[dict[str, Any]]:
    """The design annotations as a prompt; charges the render's credits when a BullMQ job asked for it."""
    run = _render_run(context, database)
    try:
        built = prompting.prepare_prompt(run, queue.backends())
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
    # The image depends on the prompt, the negative prompt and the seed only: the same three
    # (a re-run whose prompt came out identical) leave raw_render fresh.
    return Output(dataclasses.asdict(built), data_version=DataVersion(built.version))


@asset(
    **COMMON,
    code_version=RAW_RENDER_VERSION,
    retry_policy=PROVIDER_RETRY,
    metadata=IMAGE_VALUE,
    kinds={"python"},
    pool="image_providers",
    output_required=False,
)
@observe_stage
def raw_render(
    context: AssetExecutionContext,
    render_prompt: dict[str, Any],
    database: DatabaseResource,
    queue: RenderQueueResource,
    providers: ProvidersResource,
    storage: BlobStorageResource,
) -> Iterator[Output[Image.Image]]:
    """The image from the preferred provider, or the next that delivers, at exactly the requested
    size. An operator's re-render whose prompt and provider route are unchanged keeps the
    delivered image instead of paying a provider for a new one. When no provider is available,
    a customer's render waits for one in BullMQ (no value: the later steps do not run)."""
    run = _render_run(context, database)
    prompt = BuiltPrompt(**render_prompt)
    unchanged = _delivered_image(context, run, prompt, database, storage)
    if unchanged is not None:
        image, metadata = unchanged
        yield Output(image, metadata=metadata)
        return
    try:
        try:
            configured = providers.get()
        except ValueError as error:  # a provider named in RENDER_PROVIDERS lacks its settings
            context.log.error(f"provider configuration: {error}")
            raise RenderFailed(f"image providers are misconfigured: {error}", permanent=False) from None
        generated = generation.generate(
            run,
            configured,
            queue.backends().progress,
            prompt,
            breaker=providers.breaker(),
            # One budget per run: Dagster's retries of this step continue it rather than start afresh.
            budget=providers.budget(context.run_id),
            source_images=providers.source_images(),
        )
    except ProvidersUnavailable as unavailable:
        _wait_for_providers(context, run, unavailable, database, queue, providers)
        return
    except RenderFailed as error:
        raise _failure(error) from None
    native = generated.native_size or generated.image.size
    metadata = {
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
        "mask": generated.facts.get("mask", "none"),
        **{key: generated.facts[key] for key in MASK_MEASURES if key in generated.facts},
        "width": generated.image.width,
        "height": generated.image.height,
    }
    yield Output(generated.image, metadata=metadata)


def _wait_for_providers(
    context: AssetExecutionContext,
    run: RenderRun,
    unavailable: ProvidersUnavailable,
    database: DatabaseResource,
    queue: RenderQueueResource,
    providers: ProvidersResource,
) -> None:
    """No provider is available. While Dagster may retry the step and some breaker is still
    closed (a blip), fail the try; otherwise a customer's render goes back to BullMQ to wait
    (an operator's re-render has no job to wait in: it fails, the render stays as it was)."""
    blip = unavailable.retry_step and not unavailable.outage.all_open
    if run.bull is None or (blip and context.retry_number < PROVIDER_RETRY.max_retries):
        raise _failure(unavailable)
    try:
        held = outages.hold_for_providers(
            run,
            queue.backends(),
            unavailable.outage,
            max_wait_s=providers.outage_max_wait_s,
            run_id=context.run_id,
        )
    except RenderFailed as error:  # waited long enough: the render fails for good, refunded
        raise _failure(error) from None
    context.log.warning(f"no image provider available; the render waits until {held.until:%H:%M:%S} UTC")
    context.log_event(
        AssetObservation(
            asset_key=context.asset_key,
            partition=context.partition_key,
            metadata={"waiting_for_provider": True, "until": held.until.isoformat(), "cause": held.cause},
        )
    )


# What a render with a mask measured before the photo was put back outside it (services/masking.py).
MASK_MEASURES = ("outside_mask_difference", "mask_marked_fraction")
REUSED_METADATA = (
    "provider",
    "model",
    "seed",
    "native_size",
    "upscale_method",
    "reference_image",
    "mask",
    *MASK_MEASURES,
)


def _delivered_image(
    context: AssetExecutionContext,
    run: RenderRun,
    prompt: BuiltPrompt,
    database: DatabaseResource,
    storage: BlobStorageResource,
) -> tuple[Image.Image, dict[str, Any]] | None:
    """For an operator run: the image the current version was made from (and its metadata), when
    nothing that decides raw_render changed since (its code version, render_prompt's data version)."""
    if not run.is_operator_run:
        return None
    record = lineage.latest_materialization(context.instance, "raw_render", run.render_id)
    provenance = lineage.provenance_of(record)
    if record is None or provenance is None or provenance.code_version != RAW_RENDER_VERSION:
        return None
    made_from = lineage.materialization_by_id(
        context.instance, "render_prompt", provenance.input_storage_ids.get(AssetKey("render_prompt"))
    )
    if lineage.data_version_of(made_from) != DataVersion(prompt.version):
        return None  # another prompt, negative prompt or seed
    data_version = lineage.data_version_of(record)
    if data_version is None or data_version.value != _current_version_image(database, run.render_id):
        return None  # a later, undelivered try (QA failed it): not what the customer has
    try:
        image = imaging.decode(storage.get().get(stored_value_key(["raw_render"], run.render_id, "png")))
    except Exception as error:  # gone or damaged: render it anew
        context.log.warning(f"the delivered image of {run.render_id} cannot be reused: {type(error).__name__}")
        return None
    earlier = record.asset_materialization.metadata if record.asset_materialization is not None else {}
    context.log.info("prompt and provider route unchanged: keeping the delivered image, no provider call")
    metadata = {
        **{key: earlier[key] for key in REUSED_METADATA if key in earlier},
        "reused_from_run": record.run_id,
        "width": image.width,
        "height": image.height,
    }
    return image, metadata


def _current_version_image(database: DatabaseResource, render_id: str) -> str | None:
    """raw_render's data version of the image the render's current version was made from."""
    with database.get().session() as session:
        facts = render_versions.current_facts(session, render_id)
    return facts.get(RAW_RENDER_DATA) if facts is not None else None


@asset(
    **COMMON,
    code_version=code_versions.qa_verdict_version(),
    retry_policy=INFRA_RETRY,
    metadata=JSON_VALUE,
    kinds={"python"},
    output_required=False,
    check_specs=[QA_CHECK_SPEC],
)
@observe_stage
def qa_verdict(
    context: AssetExecutionContext,
    raw_render: Image.Image,
    render_prompt: dict[str, Any],
    database: DatabaseResource,
    queue: RenderQueueResource,
    storage: BlobStorageResource,
    providers: ProvidersResource,
) -> Iterator[Output[dict[str, Any]] | AssetCheckResult]:
    """Decodes, format, size, blank, exposure, detail, known failure images and duplicates of the
    organization's earlier renders (not when it edits the customer's photo). A failing image
    fails the run (BullMQ retries with a new seed); a borderline one is held for manual review:
    no value, so cdn_image does not run. Each verdict is also the `quality` check's result."""
    run = _render_run(context, database)
    made = _raw_render_facts(context, run.render_id)
    try:
        outcome = quality.check_quality(
            run,
            queue.backends(storage),
            raw_render,
            prompt_hash=render_prompt["sha256"],
            # A bundled example photo is edited with source images off too: its renders look alike.
            from_customer_photo=bool(providers.source_hosts()) or made.get("reference_image", "none") != "none",
            outside_mask_difference=_outside_mask_difference(made),
        )
    except RenderFailed as error:
        failed = getattr(error, "verdict", None)
        measures = failed.measures() if failed is not None else {}
        if failed is not None:
            yield _qa_check("fail", measures)
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
        yield _qa_check("review", verdict.measures())
        return
    yield Output(dataclasses.asdict(verdict), metadata=metadata)
    yield _qa_check(verdict.verdict, verdict.measures())


def _raw_render_facts(context: AssetExecutionContext, render_id: str) -> dict[str, Any]:
    """raw_render's latest metadata values for the render (a value travels through the IO
    manager as the image alone)."""
    record = lineage.latest_materialization(context.instance, "raw_render", render_id)
    metadata = record.asset_materialization.metadata if record is not None and record.asset_materialization else {}
    return {key: getattr(value, "value", None) for key, value in metadata.items()}


def _outside_mask_difference(facts: dict[str, Any]) -> float | None:
    """What raw_render measured outside the customer's mask before it put the photo back."""
    value = facts.get("outside_mask_difference")
    return float(value) if isinstance(value, int | float) else None


def _qa_check(verdict: str, measures: dict[str, Any]) -> AssetCheckResult:
    # Non-blocking and informational: the asset's own control flow already acted on the verdict.
    return AssetCheckResult(
        check_name=QA_CHECK,
        asset_key="qa_verdict",
        passed=verdict == "pass",
        severity=AssetCheckSeverity.WARN if verdict == "review" else AssetCheckSeverity.ERROR,
        metadata={"verdict": verdict, **{key: value for key, value in measures.items() if value is not None}},
    )


@asset(
    **COMMON,
    code_version=code_versions.cdn_image_version(),
    retry_policy=INFRA_RETRY,
    metadata=JSON_VALUE,
    kinds={"gcs"},
)
@observe_stage
def cdn_image(
    context: AssetExecutionContext,
    raw_render: Image.Image,
    qa_verdict: dict[str, Any],
    render_prompt: dict[str, Any],
    database: DatabaseResource,
    queue: RenderQueueResource,
    storage: BlobStorageResource,
    webhooks: WebhooksResource,
) -> dict[str, Any]:
    """The master, web and thumbnail variants in storage, recorded as the render's next version:
    the renders row completed and the BullMQ job done, or, for an operator's re-render, the web
    app told (event stream, webhook). A re-render that came out identical changes nothing."""
    run = _render_run(context, database)
    backends = queue.backends(storage)
    try:
        delivered = delivery.deliver(
            run,
            backends,
            raw_render,
            prompt_hash=render_prompt["sha256"],
            facts=_version_facts(context, run),
            started_at=_run_started(context) if run.is_operator_run else None,
            webhooks=webhooks.get(),
        )
    except RenderFailed as error:
        raise _failure(error) from None
    result, variants, version = delivered.result, delivered.variants, delivered.version
    context.add_output_metadata(
        {
            "thumbnail": MetadataValue.md(delivery.thumbnail_markdown(backends.storage, variants.thumbnail)),
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
            "version": version.version,
            "new_version": version.new,
        }
    )
    return result


def _version_facts(context: AssetExecutionContext, run: RenderRun) -> VersionFacts:
    """What made this version: the provider and model (raw_render's metadata, of this run or the
    one it reused), each asset's code version and the data versions it was made from."""
    instance, render_id = context.instance, run.render_id
    raw = lineage.latest_materialization(instance, "raw_render", render_id)
    metadata = raw.asset_materialization.metadata if raw is not None and raw.asset_materialization else {}
    raw_version = lineage.data_version_of(raw)
    rules = lineage.observed_rules(instance, [render_id]).get(render_id)
    return VersionFacts(
        provider=_plain(metadata.get("provider")),
        model=_plain(metadata.get("model")),
        code_versions={
            "render_prompt": code_versions.render_prompt_version(),
            "raw_render": RAW_RENDER_VERSION,
            "qa_verdict": code_versions.qa_verdict_version(),
            "cdn_image": code_versions.cdn_image_version(),
            "prompt_rules_data": rules.version if rules is not None else "",
            RAW_RENDER_DATA: raw_version.value if raw_version is not None else "",
        },
        run_id=context.run_id,
    )


def _plain(value: Any) -> str | None:
    raw = getattr(value, "value", value)
    return str(raw) if raw is not None else None


def _run_started(context: AssetExecutionContext) -> datetime | None:
    record = context.instance.get_run_record_by_id(context.run_id)
    started = record.start_time if record is not None else None
    return datetime.fromtimestamp(started, UTC) if started else None
