"""Observability: Sentry, scrubbing, structured logs, and the instrumentation the assets and hook call."""
