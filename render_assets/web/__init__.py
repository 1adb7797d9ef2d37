"""The progress server: live render progress over server-sent events, status, enqueueing for the
demo page, health and metrics. Plain Starlette: no Dagster here."""
