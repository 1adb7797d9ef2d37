"""Logging and Sentry from the environment, set up once when the code location loads."""

from __future__ import annotations

from render_assets import config
from render_assets.observability.logs import configure_logging
from render_assets.observability.sentry import init_sentry


def traces_sample_rate() -> float:
    rate = config.number(config.SENTRY_TRACES_SAMPLE_RATE)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"SENTRY_TRACES_SAMPLE_RATE must be between 0 and 1, got {rate}")
    return rate


def setup_observability() -> None:
    """Cheap when nothing is configured: one log handler, and no Sentry import without a DSN."""
    configure_logging(config.LOG_FORMAT.value(), config.LOG_LEVEL.value())
    dsn = config.SENTRY_DSN.value()
    if dsn:
        init_sentry(dsn, environment=config.SENTRY_ENVIRONMENT.value(), traces_sample_rate=traces_sample_rate())
