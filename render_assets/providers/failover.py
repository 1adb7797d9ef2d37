"""Ask the providers in order until one delivers, within one retry budget.

Rules, by error kind:
- transient (429, 5xx, timeout, connection, malformed reply): count it against the provider's
  circuit breaker and move on to the next provider; when a whole pass failed transiently, one
  more pass after exponential backoff with jitter (at least the providers' Retry-After), if the
  budget allows. A provider that may already have billed for this render is not asked again.
- refused (content refusal, fully filtered output): the other provider once; a second refusal
  ends the render with a reason a user can read.
- invalid request or rejected credentials: stop at once, and log an alert.
A provider whose breaker is open is skipped without a call."""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from render_assets.providers.base import ErrorKind, GeneratedImage, GenerationRequest, ImageProvider, ProviderError
from render_assets.providers.budget import BILLED, REFUSED, RetryBudget
from render_assets.providers.circuit_breaker import BreakerStatus, CircuitBreaker, Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FailoverSettings:
    min_call_s: float = 0.5  # a call with less time than this left is not worth starting
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    # A provider asking for a longer pause is not waited for in-step: a customer's render waits in
    # BullMQ instead (services/outages.py), its run slot free meanwhile.
    retry_after_cap_s: float = 10.0
    passes: int = 2
    # An unavailable provider whose breaker is not open is tried again this much later at the
    # soonest; one whose probe is out (half open), this much later at the latest.
    unavailable_retry_s: float = 5.0
    probe_recheck_s: float = 10.0


@dataclass(frozen=True)
class Outage:
    """Every provider the render may use is unavailable: when one may be tried again, and why
    each is down (the last real error, not only the breaker's state)."""

    retry_at: float  # Unix seconds
    causes: dict[str, str]  # provider -> its last error, e.g. "connection refused (ConnectError)"
    all_open: bool  # every provider's breaker is open: retrying within this run cannot help

    def cause(self) -> str:
        return "; ".join(f"{provider}: {cause}" for provider, cause in self.causes.items())


class FailoverError(Exception):
    """No provider delivered. `permanent`: no attempt of this render can succeed;
    `retry_step`: running the step again (after a pause) may help and the budget allows it;
    `outage`: set when the reason is that no provider is available (a render may wait for one)."""

    def __init__(
        self,
        reason: str,
        *,
        kind: str,
        permanent: bool,
        retry_step: bool,
        attempts: int,
        outage: Outage | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.permanent = permanent
        self.retry_step = retry_step and not permanent
        self.attempts = attempts
        self.outage = outage


def _summary(failures: Sequence[ProviderError]) -> str:
    return "; ".join(f"{error.provider}: {error}" for error in failures)


class Failover:
    def __init__(
        self,
        providers: Sequence[ImageProvider],
        breaker: CircuitBreaker,
        budget: RetryBudget,
        settings: FailoverSettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not providers:
            raise ValueError("no image providers configured")
        self.providers = list(providers)
        self.breaker = breaker
        self.budget = budget
        self.settings = settings or FailoverSettings()
        self.sleep = sleep
        self.rng = rng or random.Random()

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        budget, settings = self.budget, self.settings
        budget.begin()
        attempts, failovers, last_called = 0, 0, None
        failures: list[ProviderError] = []
        skipped: list[str] = []
        out_of_budget = ""
        for pass_number in range(settings.passes):
            pass_failures: list[ProviderError] = []
            for provider in self.providers:
                name = provider.name
                if budget.marked(name, REFUSED) or budget.marked(name, BILLED):
                    continue
                if budget.remaining() < settings.min_call_s:
                    out_of_budget = f"the {budget.settings.deadline_s:g} s deadline passed"
                    break
                # Budget first, breaker second: a half-open probe granted must then be made.
                if budget.calls() >= budget.settings.max_calls:
                    out_of_budget = f"all {budget.settings.max_calls} provider calls were spent"
                    break
                if self.breaker.allow(name) is Verdict.OPEN:
                    if name not in skipped:
                        skipped.append(name)
                    continue
                budget.take_call()
                attempts += 1
                if last_called is not None and last_called != name:
                    failovers += 1
                last_called = name
                try:
                    call = dataclasses.replace(request, deadline=time.monotonic() + budget.remaining())
                    generated = provider.generate(call)
                except ProviderError as error:
                    failures.append(error)
                    pass_failures.append(error)
                    self._settle(name, error)
                    refused = budget.providers_marked(REFUSED)
                    if error.kind is ErrorKind.REFUSED and len(refused) >= 2:
                        raise self._refusal(failures, attempts) from None
                    if error.kind in (ErrorKind.INVALID, ErrorKind.AUTH):
                        raise self._fail_fast(error, attempts) from None
                    continue
                self.breaker.record_success(name)
                generated.attempts = attempts
                generated.failovers = failovers
                return generated
            if out_of_budget or not pass_failures or pass_number + 1 >= settings.passes:
                break
            if any(error.kind is not ErrorKind.TRANSIENT for error in pass_failures):
                break  # a refusal moved on to the other provider already; nothing to wait for
            pause = self._pause(pass_number, pass_failures)
            if pause is None or pause + settings.min_call_s > budget.remaining():
                break
            self.sleep(pause)
        raise self._exhausted(failures, skipped, out_of_budget, attempts)

    def _settle(self, name: str, error: ProviderError) -> None:
        if error.kind is ErrorKind.TRANSIENT:
            if self.breaker.record_failure(name, str(error)):
                log.warning("circuit breaker for provider %s is open", name)
        else:
            self.breaker.record_success(name)  # it answered: the provider itself is up
        if error.may_have_billed:
            self.budget.mark(name, BILLED)
        if error.kind is ErrorKind.REFUSED:
            self.budget.mark(name, REFUSED)

    def _pause(self, pass_number: int, failures: Sequence[ProviderError]) -> float | None:
        """Exponential backoff with full jitter, but never shorter than a Retry-After asked for."""
        s = self.settings
        hints = [error.retry_after_s for error in failures if error.retry_after_s is not None]
        floor = max(hints, default=0.0)
        if floor > s.retry_after_cap_s:
            return None
        backoff = self.rng.uniform(0, min(s.backoff_max_s, s.backoff_base_s * 2**pass_number))
        return max(floor, backoff)

    def _refusal(self, failures: Sequence[ProviderError], attempts: int) -> FailoverError:
        refusals = [error for error in failures if error.kind is ErrorKind.REFUSED]
        reason = (
            "the image providers refused to render this design under their content policies; "
            "please rephrase the prompt (" + _summary(refusals) + ")"
        )
        return FailoverError(reason, kind="refused", permanent=True, retry_step=False, attempts=attempts)

    def _fail_fast(self, error: ProviderError, attempts: int) -> FailoverError:
        if error.kind is ErrorKind.AUTH:
            log.error("ALERT: image provider %s rejected our credentials: %s", error.provider, error)
            reason = f"image provider {error.provider} is misconfigured ({error})"
        else:
            log.error("ALERT: image provider %s rejected the request: %s", error.provider, error)
            reason = f"image provider {error.provider} rejected the request ({error})"
        return FailoverError(reason, kind=error.kind.value, permanent=True, retry_step=False, attempts=attempts)

    def _exhausted(
        self, failures: Sequence[ProviderError], skipped: Sequence[str], out_of_budget: str, attempts: int
    ) -> FailoverError:
        statuses = {name: self.breaker.status(name) for name in skipped}
        parts = [_summary(failures)] if failures else []
        parts += [f"{name}: circuit open after {_last_error(statuses[name])}" for name in skipped]
        detail = "; ".join(parts) or "no provider could be asked"
        refused = [error for error in failures if error.kind is ErrorKind.REFUSED]
        if refused and not any(error.kind is ErrorKind.TRANSIENT for error in failures) and not skipped:
            # Refused, and no other provider was there to ask.
            return self._refusal(failures, attempts)
        budget = self.budget
        if not out_of_budget and budget.remaining() < self.settings.min_call_s:
            out_of_budget = f"the {budget.settings.deadline_s:g} s deadline passed"
        elif not out_of_budget and budget.calls() >= budget.settings.max_calls:
            out_of_budget = f"all {budget.settings.max_calls} provider calls were spent"
        callable_left = any(
            not budget.marked(p.name, REFUSED) and not budget.marked(p.name, BILLED) for p in self.providers
        )
        retry = not out_of_budget and callable_left
        head = f"no image provider delivered ({out_of_budget})" if out_of_budget else "no image provider delivered"
        return FailoverError(
            f"{head}: {detail}",
            kind="transient",
            permanent=False,
            retry_step=retry,
            attempts=attempts,
            outage=self._outage(failures, skipped),
        )

    def _outage(self, failures: Sequence[ProviderError], skipped: Sequence[str]) -> Outage | None:
        """An outage when every provider was skipped (breaker open) or failed transiently here."""
        if any(error.kind is not ErrorKind.TRANSIENT for error in failures):
            return None  # refused or rejected: no waiting makes that deliver
        if any(error.may_have_billed for error in failures):
            # A read timeout or a malformed 200 may have made (and billed) the image: this attempt
            # fails as before, and later renders skip the provider once its breaker is open.
            return None
        failed = {error.provider: error for error in failures}  # the last error of each
        names = [provider.name for provider in self.providers]
        if any(name not in failed and name not in skipped for name in names):
            return None
        now, settings = time.time(), self.settings
        retry_at, causes, all_open = [], {}, True
        for name in names:
            status = self.breaker.status(name)
            all_open = all_open and status.state != "closed"
            causes[name] = str(failed[name]) if name in failed else _last_error(status)
            if status.state == "open":
                retry_at.append(status.retry_at)
            elif status.state == "half_open":  # another render's probe decides soon
                retry_at.append(min(status.retry_at, now + settings.probe_recheck_s))
            else:
                hint = failed[name].retry_after_s if name in failed else None
                retry_at.append(now + max(hint or 0.0, settings.unavailable_retry_s))
        return Outage(retry_at=min(retry_at), causes=causes, all_open=all_open)


def _last_error(status: BreakerStatus) -> str:
    return status.last_error or "recent failures"
