"""Stage 2: the image, from the first provider that delivers."""

from __future__ import annotations

from render_assets.domain.progress import Stage
from render_assets.domain.prompt import BuiltPrompt, scene_elements
from render_assets.providers.base import GeneratedImage, GenerationRequest, ImageProvider, ProviderError
from render_assets.services.failures import RenderFailed
from render_assets.services.progress import ProgressPublisher
from render_assets.services.run_context import RenderRun


def generate(
    run: RenderRun, providers: list[ImageProvider], progress: ProgressPublisher, prompt: BuiltPrompt
) -> GeneratedImage:
    """Ask each provider in turn until one delivers."""
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
    failures: list[ProviderError] = []
    for provider in providers:
        try:
            generated = provider.generate(request)
        except ProviderError as error:
            failures.append(error)
            continue
        progress.publish(run.render_id, run.bull, Stage.GENERATED)
        return generated
    summary = "; ".join(f"{error.provider}: {error}" for error in failures)
    transient = any(error.transient for error in failures)
    raise RenderFailed(f"no provider delivered an image ({summary})", permanent=not transient, retry_step=transient)
