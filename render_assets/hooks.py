from dagster import Failure, HookContext, failure_hook

from render_assets.services.progress import ProgressPublisher
from render_assets.services.settlement import settle_failure


@failure_hook(required_resource_keys={"database", "queue"})
def settle_failed_render(context: HookContext) -> None:
    """A step failed for good: mark the render failed, refund when final, tell BullMQ."""
    run = context.instance.get_run_by_id(context.run_id)
    if run is None or "dagster/partition" not in run.tags:
        return
    error = context.op_exception
    if isinstance(error, Failure):
        reason = error.description or "render failed"
        permanent = bool(getattr(error.metadata.get("permanent"), "value", False))
    else:
        reason, permanent = f"{context.step_key} failed: {type(error).__name__}: {error}", False
    database, queue = context.resources.database.get(), context.resources.queue.get()
    settle_failure(
        database,
        queue,
        ProgressPublisher(database, queue),
        render_id=run.tags["dagster/partition"],
        run_key=run.tags.get("dagster/run_key"),
        reason=reason,
        permanent=permanent,
    )
