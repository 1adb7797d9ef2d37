"""Failover, circuit breaker and the one retry budget, with the real SDK clients against the
fakes and the breaker and budget state in the machine's real Redis."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from render_assets.providers.base import ErrorKind, GeneratedImage, GenerationRequest, ImageProvider, ProviderError
from render_assets.providers.circuit_breaker import BreakerSettings, CircuitBreaker, Verdict
from render_assets.providers.failover import Failover, FailoverError, FailoverSettings
from render_assets_tests.fakes.image_apis import FakeImageApis
from render_assets_tests.fakes.providers import breaker, budget, google, openai

FAST = FailoverSettings(backoff_base_s=0.05, backoff_max_s=0.2)


@pytest.fixture
def fake() -> Iterator[FakeImageApis]:
    with FakeImageApis() as apis:
        yield apis


def request() -> GenerationRequest:
    return GenerationRequest(prompt="a courtyard with olive trees", negative_prompt="", width=512, height=512, seed=7)


def run_job(
    providers: Sequence[ImageProvider],
    prefix: str,
    run_id: str = "run-1",
    *,
    settings: FailoverSettings = FAST,
    **kw: Any,
) -> GeneratedImage:
    """One render attempt as raw_render makes it: fresh clients, shared Redis state."""
    budget_options = {key: kw.pop(key) for key in ("deadline_s", "max_calls") if key in kw}
    failover = Failover(providers, breaker(prefix, **kw), budget(prefix, run_id, **budget_options), settings)
    return failover.generate(request())


def calls(fake: FakeImageApis) -> dict[str, int]:
    return {endpoint: fake.calls(endpoint) for endpoint in ("gemini", "openai") if fake.calls(endpoint)}


# Each injected fault on the preferred provider (google): who delivers, and how many calls each got.
FAILOVER_CASES = [
    ("rate_limit", {"retry_after": "1"}),
    ("quota", {}),
    ("server_error", {"status": 503}),
    ("server_error", {"status": 500}),
    ("slow", {"delay_s": 1.5}),
    ("malformed", {}),
    ("malformed_image", {}),
    ("refuse", {}),  # Gemini finishReason IMAGE_SAFETY
]


@pytest.mark.parametrize(("fault", "options"), FAILOVER_CASES)
def test_a_failing_preferred_provider_fails_over_once_and_the_other_delivers(
    fake: FakeImageApis, prefix: str, fault: str, options: dict[str, Any]
) -> None:
    fake.fail("gemini", fault, **options)  # every call

    result = run_job([google(fake, timeout_s=0.8), openai(fake)], prefix)

    assert result.provider == "openai"
    assert (result.attempts, result.failovers) == (2, 1)
    assert calls(fake) == {"gemini": 1, "openai": 1}
    assert fake.billed("openai") == 1
    assert fake.billed("gemini") <= 1  # a slow or malformed reply may have billed; it is never asked twice


@pytest.mark.parametrize(("fault", "options"), [("refuse", {}), ("filtered", {}), ("malformed", {})])
def test_the_legacy_imagen_route_fails_over_the_same_way(
    fake: FakeImageApis, prefix: str, fault: str, options: dict[str, Any]
) -> None:
    fake.fail("imagen", fault, **options)
    result = run_job([google(fake, route="imagen"), openai(fake)], prefix)
    assert result.provider == "openai"
    assert (fake.calls("imagen"), fake.calls("openai")) == (1, 1)


def test_openai_moderation_block_goes_to_google_once(fake: FakeImageApis, prefix: str) -> None:
    fake.fail("openai", "refuse")
    result = run_job([openai(fake), google(fake)], prefix)
    assert result.provider == "google"
    assert calls(fake) == {"openai": 1, "gemini": 1}


def test_refused_by_both_fails_for_good_with_a_reason_a_user_can_read(fake: FakeImageApis, prefix: str) -> None:
    fake.fail("gemini", "refuse")
    fake.fail("openai", "refuse")
    providers = [google(fake), openai(fake)]

    with pytest.raises(FailoverError) as caught:
        run_job(providers, prefix)
    error = caught.value
    assert error.permanent and not error.retry_step
    assert error.reason.startswith("the image providers refused to render this design under their content policies")
    assert "google: content refused" in error.reason and "moderation_blocked" in error.reason
    assert calls(fake) == {"gemini": 1, "openai": 1}

    with pytest.raises(FailoverError):  # a step retry of the same run asks neither again
        run_job(providers, prefix)
    assert calls(fake) == {"gemini": 1, "openai": 1}


def test_a_refusal_with_no_other_provider_fails_for_good(fake: FakeImageApis, prefix: str) -> None:
    fake.fail("gemini", "refuse")
    with pytest.raises(FailoverError) as caught:
        run_job([google(fake)], prefix)
    assert caught.value.permanent and "content policies" in caught.value.reason
    assert fake.calls("gemini") == 1


@pytest.mark.parametrize(("fault", "kind"), [("auth", "auth"), ("invalid", "invalid")])
def test_invalid_requests_and_rejected_credentials_fail_fast_and_alert(
    fake: FakeImageApis, prefix: str, fault: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail("openai", fault)
    with pytest.raises(FailoverError) as caught:
        run_job([openai(fake), google(fake)], prefix)
    assert (caught.value.kind, caught.value.permanent, caught.value.retry_step) == (kind, True, False)
    assert calls(fake) == {"openai": 1}  # google is not asked: the request or our setup is wrong
    assert any(record.levelname == "ERROR" and "ALERT" in record.message for record in caplog.records)
    assert "sk-test" not in caught.value.reason and all("sk-test" not in r.getMessage() for r in caplog.records)


def test_a_429_storm_on_both_waits_retry_after_then_gives_up_within_the_budget(
    fake: FakeImageApis, prefix: str
) -> None:
    fake.fail("gemini", "rate_limit", retry_after="1")
    fake.fail("openai", "rate_limit", retry_after="1")
    providers = [google(fake), openai(fake)]
    lenient: dict[str, Any] = {"failures": 10}  # the budget, not the breaker, is what this test runs into

    with pytest.raises(FailoverError) as caught:
        run_job(providers, prefix, **lenient)
    first = caught.value
    assert not first.permanent and first.retry_step  # transient, budget left: Dagster may retry the step
    assert first.reason.startswith("no image provider delivered: google: rate limited (HTTP 429")
    assert calls(fake) == {"gemini": 2, "openai": 2}  # two passes
    gemini = [r["at"] for r in fake.recorded("gemini")]
    assert gemini[1] - gemini[0] >= 1.0  # Retry-After honoured

    with pytest.raises(FailoverError) as caught:  # Dagster's step retry continues the same budget (6 calls)
        run_job(providers, prefix, **lenient)
    assert not caught.value.retry_step
    assert "all 6 provider calls were spent" in caught.value.reason
    assert sum(calls(fake).values()) == 6
    assert fake.billed("gemini") == fake.billed("openai") == 0


def test_a_rate_limited_only_provider_is_retried_after_its_retry_after(fake: FakeImageApis, prefix: str) -> None:
    fake.fail("gemini", "rate_limit", retry_after="1", times=1)
    result = run_job([google(fake)], prefix)
    assert result.provider == "google" and result.attempts == 2
    first, second = (r["at"] for r in fake.recorded("gemini"))
    assert second - first >= 1.0


def test_a_retry_after_beyond_the_cap_is_not_waited_for_in_the_step(fake: FakeImageApis, prefix: str) -> None:
    fake.fail("gemini", "rate_limit", retry_after="600")
    with pytest.raises(FailoverError) as caught:
        run_job([google(fake)], prefix)
    assert caught.value.retry_step and fake.calls("gemini") == 1


def test_a_timed_out_generation_is_never_requested_again_in_the_same_run(fake: FakeImageApis, prefix: str) -> None:
    fake.fail("openai", "slow", delay_s=1.5)
    providers = [openai(fake, timeout_s=0.5)]

    for _ in range(3):  # the first try and two step retries
        with pytest.raises(FailoverError) as caught:
            run_job(providers, prefix)
        assert not caught.value.retry_step
    assert fake.calls("openai") == 1
    assert fake.billed("openai") <= 1  # no second charge


def test_no_combination_of_retries_and_failovers_exceeds_the_deadline(fake: FakeImageApis, prefix: str) -> None:
    fake.fail("gemini", "slow", delay_s=5)
    fake.fail("openai", "server_error", status=503)
    providers = [google(fake, timeout_s=30), openai(fake)]
    for provider in providers:
        provider.client()  # not part of what is measured: the first SDK import
    started = time.monotonic()

    with pytest.raises(FailoverError) as caught:
        run_job(providers, prefix, deadline_s=1.5)
    elapsed = time.monotonic() - started

    assert "the 1.5 s deadline passed" in caught.value.reason
    assert not caught.value.retry_step
    assert fake.calls("gemini") == 1 and fake.calls("openai") == 0  # no time was left for a useful call
    assert elapsed < 1.5 + 1.0  # the call's timeout was cut to the time left (1 s of slack for a loaded machine)


def test_the_deadline_counts_from_the_first_attempt_of_the_run(prefix: str) -> None:
    first = budget(prefix, "run-x", deadline_s=2.0)
    first.begin()
    time.sleep(0.3)
    retry = budget(prefix, "run-x", deadline_s=2.0)  # Dagster's step retry: a new process, the same run
    retry.begin()
    assert 1.0 < retry.remaining() <= 1.7
    fresh = budget(prefix, "run-y", deadline_s=2.0)
    fresh.begin()
    assert fresh.remaining() > 1.5


def test_with_the_preferred_provider_down_20_jobs_cost_it_at_most_k_calls(fake: FakeImageApis, prefix: str) -> None:
    fake.fail("gemini", "server_error", status=503)
    k = 3

    results = [
        run_job([google(fake), openai(fake)], prefix, f"run-{job}", failures=k, cooldown_s=60) for job in range(20)
    ]

    assert [result.provider for result in results] == ["openai"] * 20
    assert fake.calls("gemini") <= k
    assert fake.calls("gemini") == k  # exactly: K failures open the breaker
    assert fake.calls("openai") == 20
    assert [result.failovers for result in results] == [1] * k + [0] * (20 - k)
    assert breaker(prefix).state("google") == "open"


def test_after_the_cool_down_one_probe_decides(fake: FakeImageApis, prefix: str) -> None:
    fake.fail("gemini", "server_error", status=503)
    options: dict[str, Any] = {"failures": 2, "cooldown_s": 0.3}
    for job in range(2):
        run_job([google(fake), openai(fake)], prefix, f"open-{job}", **options)
    assert breaker(prefix).state("google") == "open"

    time.sleep(0.4)
    assert run_job([google(fake), openai(fake)], prefix, "probe-1", **options).provider == "openai"
    assert fake.calls("gemini") == 3  # one probe, which failed: open again
    # The cool-down is the reader's setting, not stored state: a long one shows the breaker is
    # open again without racing the short one on a loaded machine.
    patient = {**options, "cooldown_s": 60}
    assert run_job([google(fake), openai(fake)], prefix, "skipped", **patient).provider == "openai"
    assert fake.calls("gemini") == 3

    fake.heal("gemini")
    time.sleep(0.4)
    assert run_job([google(fake), openai(fake)], prefix, "probe-2", **options).provider == "google"
    assert breaker(prefix).state("google") == "closed"


def test_only_one_half_open_probe_goes_out_at_a_time(prefix: str) -> None:
    settings = BreakerSettings(failures_to_open=1, window_s=60, cooldown_s=0.1, probe_lease_s=1.0)
    shared = breaker(prefix)
    one = CircuitBreaker(shared.client, settings, prefix=shared.prefix)
    two = CircuitBreaker(shared.client, settings, prefix=shared.prefix)
    assert one.record_failure("google")
    assert two.allow("google") is Verdict.OPEN
    time.sleep(0.15)
    assert [one.allow("google"), two.allow("google")] == [Verdict.PROBE, Verdict.OPEN]
    time.sleep(1.05)  # the probe's run died without reporting: its lease runs out
    assert two.allow("google") is Verdict.PROBE


def test_failures_outside_the_window_do_not_add_up(prefix: str) -> None:
    shared = breaker(prefix)
    settings = BreakerSettings(failures_to_open=2, window_s=0.5, cooldown_s=60)
    windowed = CircuitBreaker(shared.client, settings, prefix=shared.prefix)
    assert not windowed.record_failure("openai")
    time.sleep(0.6)
    assert not windowed.record_failure("openai")
    assert windowed.record_failure("openai")
    windowed.record_success("openai")
    assert windowed.state("openai") == "closed"


def test_with_every_breaker_open_no_call_is_made_and_the_step_may_retry(fake: FakeImageApis, prefix: str) -> None:
    shared = breaker(prefix, failures=1)
    shared.record_failure("google")
    shared.record_failure("openai")
    with pytest.raises(FailoverError) as caught:
        run_job([google(fake), openai(fake)], prefix, failures=1)
    assert "google: circuit open" in caught.value.reason and caught.value.retry_step
    assert calls(fake) == {}


def test_a_failover_needs_providers(prefix: str) -> None:
    with pytest.raises(ValueError, match="no image providers"):
        Failover([], breaker(prefix), budget(prefix))


def test_backoff_between_passes_is_jittered_and_at_least_retry_after(fake: FakeImageApis, prefix: str) -> None:
    settings = FailoverSettings(backoff_base_s=1, backoff_max_s=4)
    failover = Failover([google(fake)], breaker(prefix), budget(prefix), settings, rng=random.Random(1))
    plain = ProviderError("busy", provider="google", kind=ErrorKind.TRANSIENT)
    hinted = ProviderError("busy", provider="google", kind=ErrorKind.TRANSIENT, retry_after_s=3.0)

    first = [failover._pause(0, [plain]) for _ in range(50)]
    assert all(p is not None and 0 <= p <= 1 for p in first) and len(set(first)) > 40  # full jitter
    later = [failover._pause(5, [plain]) for _ in range(50)]
    assert all(p is not None and p <= 4 for p in later) and max(p or 0 for p in later) > 1  # grows, capped
    assert all((failover._pause(0, [plain, hinted]) or 0) >= 3.0 for _ in range(20))  # never below Retry-After
