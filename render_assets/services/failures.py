"""How a stage says it failed, and whether anything should try again."""

from __future__ import annotations

from render_assets.observability.scrubbing import scrub_text
from render_assets.providers.failover import Outage


class RenderFailed(Exception):
    """A stage failed.

    `permanent`: no attempt can succeed (BullMQ must not retry either). `retry_step`: running the
    same step again may help (a provider hiccup), which is not so when its input is the problem.

    The reason goes everywhere (the Dagster event log, the renders row, BullMQ, the progress
    stream, the customer's browser), so it is scrubbed here, where it is born: a provider's
    error may quote the prompt, an address or a key back.
    """

    def __init__(self, reason: str, *, permanent: bool, retry_step: bool = False) -> None:
        reason = scrub_text(reason)
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_step = retry_step and not permanent


class ProvidersUnavailable(RenderFailed):
    """No image provider the render may use is available now (`outage`): a customer's render
    waits for one (services/outages.py) rather than spend an attempt."""

    def __init__(self, reason: str, outage: Outage, *, retry_step: bool) -> None:
        super().__init__(reason, permanent=False, retry_step=retry_step)
        self.outage = outage
