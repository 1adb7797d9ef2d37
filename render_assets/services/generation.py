"""Stage 2: the image, from the preferred provider or, failing that, the next one that delivers,
within the run's retry budget and behind the shared circuit breakers."""

from __future__ import annotations

from render_assets.domain.progress import Stage
from render_assets.domain.prompt import BuiltPrompt, scene_elements
from render_assets.providers.base import GeneratedImage, GenerationRequest, ImageProvider
from render_assets.providers.budget import RetryBudget
from render_assets.providers.circuit_breaker import CircuitBreaker
from render_assets.providers.failover import Failover, FailoverError, FailoverSettings
from render_assets.providers.fitting import fit_exact
from render_assets.providers.registry import preferred_first
from render_assets.services.failures import RenderFailed
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
) -> GeneratedImage:
    """The job's preferred provider first (`settings.provider`), then the configured order."""
    progress.publish(run.render_id, run.bull, Stage.GENERATING)
    width, height = run.job.settings.size
    request = GenerationRequest(
        prompt=prompt.text,
        negative_prompt=prompt.negative,
        width=width,
        height=height,
        seed=prompt.seed,
        quality=run.job.settings.quality,
        elements=scene_elements(run.job),
    )
    ordered = preferred_first(providers, run.job.settings.provider)
    try:
        generated = Failover(ordered, breaker, budget, settings).generate(request)
    except FailoverError as error:
        raise RenderFailed(error.reason, permanent=error.permanent, retry_step=error.retry_step) from None
    if generated.image.size != (width, height):
        # Every provider should fit its own output; this keeps the size promise for any that does not.
        fitted = fit_exact(generated.image, width, height)
        generated.image, generated.upscale_method = fitted.image, fitted.method
        generated.native_size = generated.native_size or fitted.native_size
    progress.publish(run.render_id, run.bull, Stage.GENERATED)
    return generated
