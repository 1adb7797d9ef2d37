from dagster import Failure, HookContext, failure_hook

from render_assets.orchestration.instrumentation import reports_failures
from render_assets.orchestration.run_identity import OUTCOME_TAG, RunIdentity
from render_assets.services.settlement import AttemptFailure, operator_run_outcome, settle


@failure_hook(required_resource_keys={"database", "queue"})
@reports_failures  # classify, record and report the failure once settled; renderId on the hook's log lines
def settle_failed_render(context: HookContext) -> None:
    """A step failed for good. A customer's run: mark the render failed, refund when final, tell
    BullMQ. An operator's re-render: nothing to refund or tell; the render keeps what it had, and
    the run says so (tag `render/outcome`)."""
    run = context.instance.get_run_by_id(context.run_id)
    identity = RunIdentity.of(run) if run is not None else None
    if identity is None or identity.render_id is None:
        return
    database = context.resources.database.get()
    if identity.is_operator_run:
        outcome = operator_run_outcome(database, identity.render_id)
        context.instance.add_run_tags(context.run_id, {OUTCOME_TAG: outcome})
        context.log.warning(f"{context.step_key} failed; {outcome}")
        return
    error = context.op_exception
    if isinstance(error, Failure):
        reason = error.description or "render failed"
        permanent = bool(getattr(error.metadata.get("permanent"), "value", False))
    else:
        # The message may hold paths, hosts or payload text: the customer gets the kind of error,
        # operators get the whole of it in the run's logs.
        reason, permanent = f"{context.step_key} failed: internal error ({type(error).__name__})", False
    failure = AttemptFailure(run_key=identity.claim_run_key, reason=reason, permanent=permanent)
    settle(context.resources.queue.backends(), identity.render_id, failure=failure)
