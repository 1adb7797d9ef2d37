"""Dagster glue: a decorator for each asset and one for the failure hook.

`observe_stage` wraps an asset's body: the render's id on every log line, the render's own words
registered with the scrubber (and scrubbed from a failing step's error), a Sentry transaction,
the step's duration (and QA score, when the step reports one) as numeric output metadata the
Dagster UI plots across partitions, and a timing row for `render-assets stats`; an interrupt
(a terminated run) fails the step without a retry (`run_interrupts`).
`reports_failures` wraps the failure hook: its lines carry the render's id, and once it has
settled the render the failure is classified, recorded and, for the render's last attempt, sent
to Sentry as one event. Neither ever fails the step or the hook it serves.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from dagster import AssetExecutionContext, DagsterRun, Failure, HookContext, MetadataValue, Output

from render_assets.observability.logs import log_context
from render_assets.observability.scrubbing import scrub_exception, sensitive_strings
from render_assets.observability.sentry import stage_transaction
from render_assets.orchestration.run_identity import RunIdentity
from render_assets.orchestration.run_interrupts import stop_on_interrupt
from render_assets.persistence import renders, stage_timings
from render_assets.persistence.quality_scores import as_score
from render_assets.persistence.stage_timings import FAILURE, SUCCESS, StepTry
from render_assets.services.failure_reports import StepFailure, payload_sensitive_strings, report_failure

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, MetadataValue) else value


def _plain_all(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _plain(value) for key, value in metadata.items()}


def _output_metadata(context: AssetExecutionContext) -> Mapping[str, Any]:
    try:
        name = context.assets_def.get_output_name_for_asset_key(context.asset_key)
        return _plain_all(context.get_output_metadata(name) or {})
    except Exception:  # metadata is a nicety; never fail a step over it
        return {}


def _qa_score(result: Any, metadata: Mapping[str, Any]) -> float | None:
    if isinstance(result, Mapping) and "verdict" in result and (score := as_score(result.get("score"))) is not None:
        return score
    return as_score(metadata.get("qa_score", metadata.get("score")))


_payload_cache: dict[str, tuple[str, tuple[str, ...]]] = {}  # run id -> (render id, strings): one read per run


def _payload_strings(database: Any, run_id: str, render_id: str) -> tuple[str, ...]:
    """The render's own words, so no log line or Sentry breadcrumb of the step can carry them."""
    cached = _payload_cache.get(run_id)
    if cached is not None and cached[0] == render_id:
        return cached[1]
    if database is None or not hasattr(database, "get"):
        return ()
    try:
        with database.get().session() as session:
            row = renders.get(session, render_id)
            strings = payload_sensitive_strings(row.payload if row is not None else None)
    except Exception as error:
        log.warning("payload of render %s not loaded for scrubbing: %s", render_id, type(error).__name__)
        return ()
    _payload_cache.clear()  # a run process runs one render; keep only the latest
    _payload_cache[run_id] = (render_id, strings)
    return strings


class _StepObservation:
    """One try of one step: its context for logs and Sentry, its clock, its timing row."""

    def __init__(self, stage: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        self.stage = stage
        self.context: AssetExecutionContext = args[0] if args else kwargs["context"]
        self.render_id = self.context.partition_key if self.context.has_partition_key else "-"
        self.run_id = self.context.run_id
        self.database = kwargs.get("database")
        self.started = time.perf_counter()
        self.provider: Any = None
        self.score: float | None = None

    @contextmanager
    def active(self) -> Iterator[None]:
        attempt = RunIdentity.of(self.context.run).attempt
        with (
            sensitive_strings.registered(_payload_strings(self.database, self.run_id, self.render_id)),
            log_context(renderId=self.render_id, runId=self.run_id, stage=self.stage),
            stage_transaction(
                self.stage,
                render_id=self.render_id,
                run_id=self.run_id,
                attempt=attempt,
                step_try=self.context.retry_number,
            ),
        ):
            yield

    def elapsed(self) -> float:
        return round(time.perf_counter() - self.started, 4)

    def metrics(self, value: Any, reported: Mapping[str, Any]) -> dict[str, float]:
        """The numbers to add to the output's metadata; also noted for the timing row."""
        self.provider = reported.get("provider")
        self.score = _qa_score(value, reported)
        metrics = {"duration_s": self.elapsed()}
        if self.score is not None and "qa_score" not in reported and "score" not in reported:
            metrics["qa_score"] = self.score
        return metrics

    def record(self, outcome: str) -> None:
        success = outcome == SUCCESS
        step = StepTry(
            self.render_id,
            self.run_id,
            self.stage,
            outcome,
            self.elapsed(),
            provider=str(self.provider)[:64] if self.provider and success else None,
            qa_score=self.score if success else None,
        )
        log.log(
            logging.INFO if success else logging.WARNING,
            "step %s %s in %.3f s",
            self.stage,
            "finished" if success else "failed",
            step.duration_s,
        )
        if self.database is None or not hasattr(self.database, "get"):
            return
        try:
            with self.database.get().session() as session:
                stage_timings.record(session, step)
        except Exception as error:
            log.warning("step timing of %s not recorded: %s", self.stage, type(error).__name__)


def observe_stage(fn: Callable[P, R]) -> Callable[P, R]:
    """Instrument an asset (a function returning its value, or a generator of `Output`s); put it
    under `@asset(...)`."""
    stage = fn.__name__

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def observed_outputs(*args: P.args, **kwargs: P.kwargs) -> Iterator[Any]:
            step = _StepObservation(stage, args, kwargs)
            with step.active():
                try:
                    with stop_on_interrupt():
                        for item in fn(*args, **kwargs):
                            if isinstance(item, Output):
                                reported = {**_output_metadata(step.context), **_plain_all(item.metadata)}
                                item = item.with_metadata({**item.metadata, **step.metrics(item.value, reported)})
                            yield item
                except BaseException as error:
                    scrub_exception(error)  # while the render's words are registered
                    step.record(FAILURE)
                    raise
                step.record(SUCCESS)

        return observed_outputs  # type: ignore[return-value]

    @functools.wraps(fn)
    def observed(*args: P.args, **kwargs: P.kwargs) -> R:
        step = _StepObservation(stage, args, kwargs)
        with step.active():
            try:
                with stop_on_interrupt():
                    result = fn(*args, **kwargs)
            except BaseException as error:
                scrub_exception(error)  # while the render's words are registered
                step.record(FAILURE)
                raise
            step.context.add_output_metadata(step.metrics(result, _output_metadata(step.context)))
            step.record(SUCCESS)
        return result

    return observed


def _metadata_value(error: Failure, *keys: str) -> Any:
    for key in keys:
        if key in error.metadata:
            return _plain(error.metadata[key])
    return None


def _error_types(error: BaseException | None) -> tuple[str, ...]:
    names: list[str] = []
    seen: set[int] = set()
    while error is not None and id(error) not in seen and len(names) < 8:
        seen.add(id(error))
        names.append(type(error).__name__)
        error = error.__cause__ or error.__context__
    return tuple(names)


def _step_failure(context: HookContext, run: DagsterRun) -> StepFailure:
    identity = RunIdentity.of(run)
    render_id, run_key = identity.render_id or "-", identity.claim_run_key
    error = context.op_exception
    if isinstance(error, Failure):
        explicit = _metadata_value(error, "failure_class")
        return StepFailure(
            render_id=render_id,
            run_id=context.run_id,
            run_key=run_key,
            stage=context.step_key,
            reason=error.description or "render failed",
            error_types=_error_types(error.__cause__ or error.__context__),
            explicit_class=str(explicit) if explicit else None,
            qa_score=as_score(_metadata_value(error, "qa_score", "score")),
        )
    return StepFailure(
        render_id=render_id,
        run_id=context.run_id,
        run_key=run_key,
        stage=context.step_key,
        reason=f"{context.step_key} failed: {type(error).__name__}: {error}",
        error_types=_error_types(error),
        unexpected=error,
    )


def _report(context: HookContext, run: DagsterRun) -> None:
    try:
        report_failure(context.resources.database.get(), _step_failure(context, run))
    except Exception as problem:
        log.warning("failure of %s not reported: %s", context.step_key, type(problem).__name__)


def reports_failures(hook: Callable[[HookContext], None]) -> Callable[[HookContext], None]:
    """Put under `@failure_hook(...)`: the hook's lines carry the render's id, and once the hook
    has settled the render (or failed to), the failure is classified, recorded and, for the
    render's last attempt, sent to Sentry. The hook needs the `database` resource."""

    @functools.wraps(hook)
    def reporting(context: HookContext) -> None:
        run = context.instance.get_run_by_id(context.run_id)
        render_id = RunIdentity.of(run).render_id if run is not None else None
        if run is None or render_id is None:
            hook(context)
            return
        with log_context(renderId=render_id, runId=context.run_id, stage=context.step_key):
            try:
                hook(context)
            finally:
                # After settlement: the renders row now says whether this attempt was the last.
                _report(context, run)

    return reporting
