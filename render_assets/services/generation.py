"""Stage 2: the image, from the preferred provider or, failing that, the next one that delivers,
within the run's retry budget and behind the shared circuit breakers. With source images
enabled (`RENDER_SOURCE_IMAGE_HOSTS`), the customer's photo is fetched first and the providers
redesign it; a photo the policy refuses fails the render before any provider is asked. A bundled
example photo (`domain/url_policy.py`) is redesigned whether source images are enabled or not."""

from __future__ import annotations

from render_assets.adapters.remote_images import RemoteImageFetcher, SourceImageUnavailable, examples_only
from render_assets.domain.payload import RenderJob
from render_assets.domain.progress import Stage
from render_assets.domain.prompt import BuiltPrompt, scene_elements
from render_assets.domain.source_photos import SourcePhoto
from render_assets.domain.url_policy import SourceImageRefused, is_example_url
from render_assets.persistence import renders
from render_assets.providers.base import GeneratedImage, GenerationRequest, ImageProvider
from render_assets.providers.budget import RetryBudget
from render_assets.providers.circuit_breaker import CircuitBreaker
from render_assets.providers.failover import Failover, FailoverError, FailoverSettings
from render_assets.providers.fitting import fit_exact
from render_assets.providers.registry import preferred_first
from render_assets.services import masking
from render_assets.services.failures import ProvidersUnavailable, RenderFailed
from render_assets.services.masking import SiteMask
from render_assets.services.progress import ProgressPublisher
from render_assets.services.run_context import RenderRun


def generate(
    run: RenderRun,
    providers: list[ImageProvider],
    progress: ProgressPublisher,
    prompt: BuiltPrompt,
    *,
    breaker: CircuitBreaker,
    budget: RetryBudget,
    settings: FailoverSettings | None = None,
    source_images: RemoteImageFetcher | None = None,
) -> GeneratedImage:
    """The job's preferred provider first (`settings.provider`), then the configured order.
    `source_images`: the fetcher of the customer's photo (and of its mask); None keeps the
    render text-to-image, unless its photo is a bundled example. With a mask, the providers
    redesign the marked area only, and the photo's own pixels are put back outside it."""
    progress.stage(run, Stage.GENERATING)
    budget.begin()  # the photo's and the mask's fetch and decoding count toward the deadline
    fetcher = photo_fetcher(run.job, source_images)
    photo = source_photo(run.job, fetcher)
    site = _site_mask(run.job, photo, fetcher)
    width, height = run.job.settings.size
    request = GenerationRequest(
        prompt=prompt.text,
        negative_prompt=prompt.negative,
        width=width,
        height=height,
        seed=prompt.seed,
        quality=run.job.settings.quality,
        elements=scene_elements(run.job),
        reference_image=photo.data if photo is not None else None,
        mask=site.for_providers(photo) if site is not None and photo is not None else None,
    )
    ordered = preferred_first(providers, run.job.settings.provider)
    try:
        generated = Failover(ordered, breaker, budget, settings).generate(request)
    except FailoverError as error:
        if error.outage is not None:
            raise ProvidersUnavailable(error.reason, error.outage, retry_step=error.retry_step) from None
        raise RenderFailed(error.reason, permanent=error.permanent, retry_step=error.retry_step) from None
    if not run.is_operator_run:  # the provider made (and billed) an image: a cancel now is charged
        with progress.database.session() as session:
            renders.mark_generated(session, run.render_id)
    if generated.image.size != (width, height):
        # Every provider should fit its own output; this keeps the size promise for any that does not.
        fitted = fit_exact(generated.image, width, height)
        generated.image, generated.upscale_method = fitted.image, fitted.method
        generated.native_size = generated.native_size or fitted.native_size
    if site is not None:
        kept = masking.keep_outside(generated, site)
        generated.image = kept.image
        generated.facts["outside_mask_difference"] = kept.outside_difference
        generated.facts["mask_marked_fraction"] = kept.marked_fraction
    progress.stage(run, Stage.GENERATED)
    return generated


def photo_fetcher(job: RenderJob, source_images: RemoteImageFetcher | None) -> RemoteImageFetcher | None:
    """The fetcher of the job's images: the configured one; with source images off, the bundled
    examples' for a job whose photo is one (they need no network nor allowlist); else None."""
    if source_images is not None:
        return source_images
    return examples_only() if is_example_url(job.sourceImageUrl) else None


def source_photo(job: RenderJob, source_images: RemoteImageFetcher | None) -> SourcePhoto | None:
    """The job's source photo, ready for the providers; None when source images are off."""
    if source_images is None:
        return None
    try:
        return source_images.fetch(job.sourceImageUrl, field="sourceImageUrl")
    except SourceImageRefused as refused:
        # The customer's input: the same URL fails again, so no retry, and the charge is refunded.
        raise RenderFailed(f"invalid job payload: {refused}", permanent=True) from None
    except SourceImageUnavailable as unavailable:
        # Worded so no "name: " pair reads as a provider's name in the failure records.
        reason = f"the source image (sourceImageUrl) could not be fetched, {unavailable.problem}"
        raise RenderFailed(reason, permanent=False, retry_step=True) from None


def _site_mask(job: RenderJob, photo: SourcePhoto | None, fetcher: RemoteImageFetcher | None) -> SiteMask | None:
    """The area to redesign; None without a mask or without the photo (text-to-image)."""
    if photo is None or fetcher is None:
        return None
    try:
        return masking.site_mask(job, photo, fetcher)
    except SourceImageRefused as refused:  # MaskRefused too: the customer's input, refunded
        raise RenderFailed(f"invalid job payload: {refused}", permanent=True) from None
    except SourceImageUnavailable as unavailable:
        reason = f"the mask image (maskImageUrl) could not be fetched, {unavailable.problem}"
        raise RenderFailed(reason, permanent=False, retry_step=True) from None
