"""The webhook sensor: retries the web app's webhook events that are due (re-renders), with backoff."""

from dagster import DefaultSensorStatus, SensorEvaluationContext, SkipReason, sensor

from render_assets.orchestration.resources.webhooks import WebhooksResource

WEBHOOK_INTERVAL_S = 30  # retries start 10 s apart; the run itself made the first attempt


@sensor(
    minimum_interval_seconds=WEBHOOK_INTERVAL_S,
    default_status=DefaultSensorStatus.RUNNING,
    description="Retries webhook events the web app has not taken yet (RENDER_WEBHOOK_URL).",
)
def webhook_sensor(context: SensorEvaluationContext, webhooks: WebhooksResource) -> SkipReason:
    sender = webhooks.get()
    if sender is None:
        return SkipReason("no webhook configured (RENDER_WEBHOOK_URL)")
    sent = sender.send_due()
    if sent.failed or sent.gave_up:
        context.log.warning(f"webhook: {sent.failed} attempt(s) failed, {sent.gave_up} event(s) given up")
    return SkipReason(f"webhook: {sent.delivered} delivered, {sent.failed} to retry, {sent.gave_up} given up")
