"""Sentry sees one event per failed render, with its tags, and never a secret or the user's prompt.

Events are caught by an in-process transport (the SDK's own `Transport` interface), so what is
asserted on is exactly what would have been sent: the serialized envelopes.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk

from render_assets.observability.sentry import init_sentry
from render_assets.orchestration.resources import ProvidersResource
from render_assets.persistence import renders
from render_assets.persistence.database import Database
from render_assets.providers.base import ErrorKind, GeneratedImage, GenerationRequest, ProviderError
from render_assets.services.failure_reports import StepFailure, report_failure
from render_assets_tests.fakes.blank_provider import BlankProviders
from render_assets_tests.payloads import web_app_job
from render_assets_tests.sentry_capture import CollectingTransport, captured_sentry
from render_assets_tests.stack import in_process_stack

OPENAI_KEY = "sk-proj-T3stK3yAbCdEfGhIjKlMnOpQrStUv"
BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIifQ.c2lnbmF0dXJlLXZhbHVlLTEyMzQ1"
EMAIL = "jane.gardener@example.org"
PROMPT = "Lavender spiral maze behind the blue greenhouse for Aunt Matilda"
PLANTED = (OPENAI_KEY, BEARER.split()[1], EMAIL, PROMPT)


@pytest.fixture
def sentry_events() -> Iterator[CollectingTransport]:
    with captured_sentry() as transport:
        yield transport


class LeakyProvider:
    """A provider of our own whose error quotes a key, a token, an address and the prompt back."""

    name = "leaky"

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        raise ProviderError(
            f"request rejected: key {OPENAI_KEY} with {BEARER} for {EMAIL}; prompt was {PROMPT!r} / {request.prompt}",
            provider=self.name,
            kind=ErrorKind.INVALID,
        )


class LeakyProviders(ProvidersResource):
    def get(self) -> list[Any]:
        return [LeakyProvider()]


def planted_job() -> dict[str, Any]:
    data = web_app_job()
    data["prompt"]["user"] = PROMPT
    return data


def assert_nothing_planted(transport: CollectingTransport) -> None:
    sent = transport.serialized().lower()
    for secret in PLANTED:
        assert secret.lower() not in sent, f"{secret[:12]}… reached Sentry"


def test_a_failed_render_is_one_event_with_its_tags_and_no_secrets(
    sentry_events: CollectingTransport, sqlite_url: str, queue_name: str, tmp_path: Path
) -> None:
    providers = LeakyProviders(state_prefix=f"test:{queue_name}")
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=providers) as stack:
        data = planted_job()
        stack.enqueue(data)
        # Planted where careless code would put them: scope extras, contexts and log breadcrumbs.
        sentry_sdk.set_extra("debug", f"retry with {OPENAI_KEY} as {EMAIL} ({BEARER})")
        sentry_sdk.set_extra("prompt", PROMPT)
        sentry_sdk.set_context("payload", {"prompt": data["prompt"], "renderId": data["renderId"]})
        logging.getLogger("render_assets.tests").warning("calling provider for %s with %s", EMAIL, OPENAI_KEY)

        [result] = stack.run_all()
        sentry_sdk.flush()

    assert not result.success
    [event] = sentry_events.events()
    assert event["tags"]["renderId"] == data["renderId"]
    assert event["tags"]["provider"] == "leaky"
    assert event["tags"]["stage"] == "raw_render"
    assert event["tags"]["attempt"] == "1"
    assert event["fingerprint"] == ["render-failure", "provider_error"]
    assert event["level"] == "error"
    assert "image provider leaky rejected the request" in json.dumps(event)
    assert event["extra"]["prompt"] == "[Filtered]"
    assert_nothing_planted(sentry_events)
    # A transaction per step that ran, in one trace (the run's).
    stages = {txn["tags"]["stage"]: txn for txn in sentry_events.transactions()}
    assert set(stages) == {"render_prompt", "raw_render"}
    assert stages["raw_render"]["contexts"]["trace"]["status"] == "internal_error"
    assert len({txn["contexts"]["trace"]["trace_id"] for txn in stages.values()}) == 1


def test_an_attempt_bullmq_retries_sends_no_event_and_the_last_one_sends_one(
    sentry_events: CollectingTransport, sqlite_url: str, queue_name: str, tmp_path: Path
) -> None:
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=BlankProviders()) as stack:
        data = planted_job()
        stack.enqueue(data, attempts=2, backoff={"type": "fixed", "delay": 50})

        [first] = stack.run_all()
        assert not first.success
        assert sentry_events.events() == []

        time.sleep(0.2)
        [second] = stack.run_all()
        sentry_sdk.flush()

    assert not second.success
    [event] = sentry_events.events()
    assert event["fingerprint"] == ["render-failure", "quality_rejected"]
    assert (event["tags"]["stage"], event["tags"]["attempt"], event["tags"]["provider"]) == ("qa_verdict", "2", "blank")
    # The retried attempt left a breadcrumb on the way.
    crumbs = [crumb.get("message", "") for crumb in event["breadcrumbs"]["values"]]
    assert any("render attempt failed: quality_rejected" in crumb for crumb in crumbs)
    assert_nothing_planted(sentry_events)


def test_an_unexpected_error_is_sent_with_its_stack_but_without_locals_or_secrets(
    sentry_events: CollectingTransport, sqlite_url: str, queue_name: str, tmp_path: Path
) -> None:
    with in_process_stack(sqlite_url, queue_name, tmp_path) as stack:
        data = planted_job()
        stack.enqueue(data)
        stack.tick()  # claims the job: the renders row exists
        database = Database(sqlite_url)
        with database.session() as session:
            renders.mark_failed(session, data["renderId"], reason="boom", final=True)
            run_key = renders.require(session, data["renderId"]).run_key

        def leaky_step(api_key: str) -> None:
            raise RuntimeError(f"upstream said {BEARER} to {EMAIL} about {PROMPT}")

        try:
            leaky_step(OPENAI_KEY)
        except RuntimeError as error:
            failure = StepFailure(
                render_id=data["renderId"],
                run_id=str(uuid.uuid4()),
                run_key=run_key,
                stage="render_prompt",
                reason=f"render_prompt failed: RuntimeError: {error}",
                error_types=("RuntimeError",),
                unexpected=error,
            )
            recorded = report_failure(database, failure)
        database.dispose()

    assert recorded is not None and recorded.failure_class == "internal" and recorded.final
    assert all(secret not in recorded.reason for secret in PLANTED)
    [event] = sentry_events.events()
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    frames = exception["stacktrace"]["frames"]
    assert any(frame["function"] == "leaky_step" for frame in frames)
    assert all("vars" not in frame for frame in frames)
    assert_nothing_planted(sentry_events)


def test_without_a_dsn_sentry_is_never_imported() -> None:
    probe = (
        "import os, sys; os.environ.pop('SENTRY_DSN', None); import render_assets.orchestration.definitions; "
        "print('sentry_sdk' in sys.modules)"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "False"


def test_a_malformed_dsn_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="SENTRY_DSN is not a valid Sentry DSN") as raised:
        init_sentry("not-a-dsn-secretvalue", force=True)
    assert "secretvalue" not in str(raised.value)
