"""Planted secrets never come out: one render delivered, one failed by a provider that quotes the
request back, one job refused at claim, one render whose provider client crashes with the request
in its error, all through the real sensor and job (real Redis, PostgreSQL, the real OpenAI client
against the fake API), then every output searched.

Outputs: everything written to stdout/stderr and every log record (root at DEBUG), Dagster's event
log (asset metadata included) and runs (tags, config), Sentry envelopes, the progress event
streams, SSE frames and status replies of the progress server, /metrics, the BullMQ jobs'
progress, return value, failed reason and stack trace, every database row but the payload (the
data itself), and the alert webhook's messages. The user's sentence may be in the payload and in
the render_prompt asset's value: those are data, not outputs, and are not searched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from dagster._serdes import serialize_value
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from render_assets.adapters.json_webhook import JsonWebhook
from render_assets.domain import prompt_styles
from render_assets.domain.failure_patterns import PatternSettings
from render_assets.orchestration.resources import ProvidersResource
from render_assets.persistence.database import Database
from render_assets.persistence.models import Base
from render_assets.providers.base import GeneratedImage, GenerationRequest
from render_assets.services.failure_monitor import Notifier, WebhookNotifier, check_patterns, sentry_notifier
from render_assets.web import access_log
from render_assets.web.auth import mint_token
from render_assets_tests.bullmq_jobs import bull_job
from render_assets_tests.conftest import REDIS_URL, TABLES, forget, unique_prefix
from render_assets_tests.fakes.image_apis import FakeImageApis
from render_assets_tests.fakes.providers import resource
from render_assets_tests.payloads import web_app_job
from render_assets_tests.progress_server import read_sse, serving, web_settings
from render_assets_tests.sentry_capture import CollectingTransport, captured_sentry
from render_assets_tests.stack import InProcessStack, in_process_stack
from render_assets_tests.webhook_inbox import WebhookInbox

EVENTS_PREFIX = "render-events:"  # the queue resource's default, which the stack uses
WEBHOOK_SECRET = "webhook-signing-secret"
SSE_SECRET = "sse-secret-for-leak-test"
CRASH = threading.Event()  # set: the providers resource hands out a client that crashes


class CrashingClient:
    """A provider client with a bug: an unexpected error (not a ProviderError) quoting the request."""

    name = "openai"

    def __init__(self, key: str) -> None:
        self.key = key

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        raise RuntimeError(f"client bug while sending {request.prompt!r} with key {self.key}")


class SwitchableProviders(ProvidersResource):
    def get(self) -> list[Any]:
        return [CrashingClient(self.openai_api_key or "")] if CRASH.is_set() else super().get()


@dataclass(frozen=True)
class Planted:
    """Distinctive values, new for each run of the test, so a hit can only come from this run."""

    openai_key: str
    google_key: str
    bearer: str
    db_password: str
    email: str
    sentence: str
    signature: str

    @classmethod
    def new(cls) -> Planted:
        tag = uuid.uuid4().hex
        return cls(
            openai_key=f"sk-proj-LeakCanary{tag[:20]}Q9",
            google_key=f"AIzaLeakCanary{tag[:24]}",
            bearer=f"bearerCanary{tag[8:28]}",
            db_password=f"pwCanary{tag[4:16]}",
            email=f"jane.canary{tag[:6]}@example.org",
            sentence="Aunt Matilda wants a lavender spiral maze behind the cobalt greenhouse",
            signature=f"{tag}{tag}",
        )

    def secrets(self) -> dict[str, str]:
        return {name: str(value) for name, value in vars(self).items()}

    def prompt(self) -> str:
        return f"{self.sentence}. Mail {self.email} and call with Bearer {self.bearer}"

    def source_url(self) -> str:
        return (
            "https://storage.example.com/uploads/photo.jpg?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            f"&X-Goog-Signature={self.signature}"
        )

    def job(self) -> dict[str, Any]:
        data = web_app_job(resolution="512x512")
        data["prompt"]["user"] = self.prompt()
        data["prompt"]["system"] = f"Reply to {self.email}"
        data["annotations"].append({"type": "textLabel", "data": {"text": f"{self.sentence} ({self.email})"}})
        data["sourceImageUrl"] = self.source_url()
        data["settings"]["provider"] = "openai-gpt-image"
        return data


class RecordKeeper(logging.Handler):
    """Every record as any handler would render it (message and traceback), unscrubbed by us."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def records() -> Iterator[RecordKeeper]:
    keeper = RecordKeeper()
    root = logging.getLogger()
    level = root.level
    root.addHandler(keeper)
    root.setLevel(logging.DEBUG)
    try:
        yield keeper
    finally:
        root.removeHandler(keeper)
        root.setLevel(level)


@pytest.fixture
def clean_postgres(postgres_url: str) -> str:
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return postgres_url


def dagster_outputs(stack: InProcessStack) -> list[str]:
    """Each run (tags, config) and its whole event log: messages, errors, asset metadata."""
    found = []
    for run in stack.instance.get_runs():
        found.append(serialize_value(run))
        found += [serialize_value(entry) for entry in stack.instance.all_logs(run.run_id)]
    return found


def bullmq_outputs(queue_name: str, job_ids: list[str]) -> list[str]:
    found = []
    for job_id in job_ids:
        job = bull_job(queue_name, job_id)
        fields = {
            "progress": job.progress,
            "returnvalue": job.returnvalue,
            "failedReason": job.failedReason,
            "stacktrace": job.stacktrace,
        }
        found.append(json.dumps(fields, default=str))
    return found


def database_outputs(database_url: str) -> list[str]:
    """Every row of every project table; of `renders`, all but the payload (the job's own data)."""
    engine = create_engine(database_url)
    found = []
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            columns = [column for column in table.columns if not (table.name == "renders" and column.name == "payload")]
            for row in connection.execute(table.select().with_only_columns(*columns)):
                found.append(json.dumps(dict(row._mapping), default=str))
    engine.dispose()
    return found


def stream_outputs(render_ids: list[str]) -> list[str]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    return [json.dumps(client.xrange(f"{EVENTS_PREFIX}{render_id}")) for render_id in render_ids]


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def web_outputs(database_url: str, render_ids: dict[str, str], tokens: dict[str, str]) -> list[str]:
    """SSE frames and status of each render, and /metrics, from a real progress server."""
    access_log.install()  # as `render-assets serve` does
    found = []
    settings = web_settings(database_url, EVENTS_PREFIX, sse_secret=SSE_SECRET)
    # This test's own HTTP client plays the browser: its log lines (URLs with tokens) are not the server's.
    client_log = logging.getLogger("httpx")
    with serving(settings, log_level="debug") as base, _quiet(client_log):
        for render_id, outcome in render_ids.items():
            token = tokens[render_id]
            status = httpx.get(f"{base}/renders/{render_id}?token={token}")
            found.append(status.text)
            if outcome == "refused":
                assert status.status_code == 404  # refused at claim: no renders row
                continue
            read = read_sse(f"{base}/renders/{render_id}/events?token={token}")
            assert read.status == 200 and read.ended, render_id
            assert read.events[-1].event == outcome, render_id
            found += [f"{event.event} {event.id} {event.data}" for event in read.events]
        found.append(httpx.get(f"{base}/metrics").text)
    return found


def alert_outputs(stack: InProcessStack) -> list[str]:
    """The failure-pattern monitor at a threshold of one failure, through Sentry and the webhook."""
    inbox = WebhookInbox()
    try:
        settings = PatternSettings.from_json('{"provider_api_errors": {"min_count": 1}}')
        notifiers: list[Notifier] = [sentry_notifier, WebhookNotifier(JsonWebhook(inbox.url))]
        changes = check_patterns(stack.database, settings, notifiers, now=datetime.now(UTC))
    finally:
        inbox.close()
    assert [change.pattern for change in changes] == ["provider_api_errors"]
    assert len(inbox.bodies) == 1
    return inbox.bodies


def _around(text: str, secret: str) -> str:
    at = text.lower().find(secret.lower())
    return text[max(0, at - 160) : at + len(secret) + 40].replace(secret, "<HERE>")


def assert_absent(planted: Planted, outputs: dict[str, list[str]]) -> None:
    leaks = [
        f"{name} in {where}: …{_around(piece, secret)}…"
        for where, texts in outputs.items()
        for name, secret in planted.secrets().items()
        for piece in texts
        if secret.lower() in piece.lower()
    ]
    assert not leaks, "planted secrets came out:\n" + "\n".join(leaks)


def test_planted_secrets_reach_no_output(
    clean_postgres: str,
    queue_name: str,
    tmp_path: Path,
    records: RecordKeeper,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    planted = Planted.new()
    host_and_db = clean_postgres.split("@", 1)[1]
    database_url = f"postgresql+psycopg2://postgres:{planted.db_password}@{host_and_db}"  # trust auth ignores it
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("OPENAI_API_KEY", planted.openai_key)
    monkeypatch.setenv("GOOGLE_API_KEY", planted.google_key)
    prefix = unique_prefix()
    outputs: dict[str, list[str]] = {}

    render_webhook = WebhookInbox()
    with FakeImageApis() as fake, captured_sentry() as sentry_events:
        providers = SwitchableProviders(**providers_settings(fake, prefix, planted.openai_key))
        with in_process_stack(
            database_url,
            queue_name,
            tmp_path,
            providers=providers,
            webhook_url=render_webhook.url,
            webhook_secret=WEBHOOK_SECRET,
        ) as stack:
            delivered, failed, refused, crashed = (planted.job() for _ in range(4))
            failed["annotations"] = []  # a short prompt: the provider's quote of it keeps the brief
            refused["prompt"]["user"] = planted.prompt() * 40  # too long
            refused[planted.sentence] = planted.email  # an unknown field named by the user's words
            refused["settings"]["apiKey"] = planted.openai_key
            job_ids = [stack.enqueue(delivered)]
            [ok] = stack.run_all()
            fake.fail("openai", "echo")
            job_ids.append(stack.enqueue(failed))
            job_ids.append(stack.enqueue(refused, web_app=False, attempts=1))
            [not_ok] = stack.run_all()
            CRASH.set()
            try:
                job_ids.append(stack.enqueue(crashed, attempts=1))
                [crash] = stack.run_all()
            finally:
                CRASH.clear()

            assert ok.success and not not_ok.success and not crash.success
            assert fake.billed("openai") == 1 and fake.calls("openai") == 2
            assert [bull_job(queue_name, job_id).finishedOn is not None for job_id in job_ids] == [True] * 4
            # An operator's re-render after a template change: a new version, and the web app told.
            fake.heal("openai")
            landscape = prompt_styles.TEMPLATES["landscape"]
            with monkeypatch.context() as patch:
                patch.setitem(
                    prompt_styles.TEMPLATES, "landscape", dataclasses.replace(landscape, base="A lovely garden with")
                )
                assert stack.execute(partition_key=delivered["renderId"]).success
            assert len(render_webhook.received) == 1
            outputs["render webhook"] = [f"{request.headers} {request.body}" for request in render_webhook.received]

            outputs["alert webhook"] = alert_outputs(stack)
            outputs["dagster"] = dagster_outputs(stack)
        outputs["sentry"] = [sentry_events.serialized()]
        assert_sentry_saw_the_failure(sentry_events, failed["renderId"], crashed["renderId"])
    forget(prefix)

    render_webhook.close()
    render_ids = {
        delivered["renderId"]: "rerendered",
        failed["renderId"]: "failed",
        refused["renderId"]: "refused",
        crashed["renderId"]: "failed",
    }
    tokens = {render_id: mint_token(SSE_SECRET, render_id, ttl_s=600) for render_id in render_ids}
    outputs["web"] = web_outputs(database_url, render_ids, tokens)
    outputs["event streams"] = stream_outputs(list(render_ids))
    outputs["bullmq"] = bullmq_outputs(queue_name, job_ids)
    outputs["database"] = database_outputs(database_url)
    outputs["log records"] = records.lines
    written = capfd.readouterr()
    outputs["stdout/stderr"] = [written.out, written.err]

    # The searches can find things: what the outputs must say is there.
    assert any("rejected the request" in row for row in outputs["database"])
    assert any("raw_render failed: internal error (RuntimeError)" in row for row in outputs["database"])
    assert any("client bug while sending" in entry for entry in outputs["dagster"])
    assert any("invalid job payload" in piece for piece in outputs["bullmq"])
    assert any(piece.startswith("completed ") for piece in outputs["web"])
    assert any(piece.startswith("rerendered ") for piece in outputs["web"])
    assert any('"event":"render.rerendered"' in piece for piece in outputs["render webhook"])
    assert len(records.lines) > 50 and any("step raw_render failed" in line for line in records.lines)
    assert_absent(planted, outputs)
    # The progress server's requests were logged (uvicorn's access log), without their tokens.
    assert "token=REDACTED" in written.err + written.out
    signatures = {f"token for {render_id}": token.split(".")[1] for render_id, token in tokens.items()}
    logged = {"access log": [written.out, written.err, *records.lines]}
    assert not [name for name, value in signatures.items() if any(value in text for text in logged["access log"])]


def providers_settings(fake: FakeImageApis, prefix: str, key: str) -> dict[str, Any]:
    """The resource's settings as the tests' resource helper makes them, with the planted key."""
    base = resource(fake, prefix, order="openai", openai_api_key=key)
    return {name: getattr(base, name) for name in ProvidersResource.model_fields}


def assert_sentry_saw_the_failure(transport: CollectingTransport, *render_ids: str) -> None:
    events = transport.events()
    for render_id in render_ids:
        assert len([event for event in events if event.get("tags", {}).get("renderId") == render_id]) == 1
    assert any("failure pattern" in (event.get("message") or "") for event in events)


def test_a_failed_statement_does_not_quote_its_values(sqlite_url: str) -> None:
    """SQLAlchemy puts a failed statement's bound values in its error message (which Dagster's
    event log, Sentry and logs print); the project's engines hide them."""
    planted = Planted.new()
    database = Database(sqlite_url)
    try:
        with pytest.raises(DBAPIError) as raised, database.session() as session:
            session.execute(
                text("INSERT INTO renders (id, message) VALUES (:id, :message)"),
                {
                    "id": "render-x",
                    "message": planted.prompt(),
                },
            )
    finally:
        database.dispose()
    assert "renders" in str(raised.value) and "hide_parameters" in str(raised.value)
    assert planted.sentence not in str(raised.value) and planted.email not in str(raised.value)
