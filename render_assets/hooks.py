from dagster import Failure, HookContext, failure_hook

from render_assets.observability.instrumentation import reports_failures
from render_assets.services.progress import ProgressPublisher
from render_assets.services.settlement import AttemptFailure, settle


@failure_hook(required_resource_keys={"database", "queue"})
@reports_failures  # classify, record and report the failure once settled; renderId on the hook's log lines
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
        # The message may hold paths, hosts or payload text: the customer gets the kind of error,
        # operators get the whole of it in the run's logs.
        reason, permanent = f"{context.step_key} failed: internal error ({type(error).__name__})", False
    database, queue = context.resources.database.get(), context.resources.queue.get()
    failure = AttemptFailure(run_key=run.tags.get("dagster/run_key"), reason=reason, permanent=permanent)
    publisher = ProgressPublisher(database, queue, context.resources.queue.events())
    settle(database, queue, publisher, run.tags["dagster/partition"], failure=failure)
