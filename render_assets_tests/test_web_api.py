"""The progress server's other routes on a real uvicorn: access tokens, status, enqueueing as the
web app does, examples, local files, health and metrics (real Redis, real databases)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from render_assets.adapters import example_images
from render_assets.domain.payload import MAX_PAYLOAD_BYTES
from render_assets.domain.progress import Stage
from render_assets.persistence import renders
from render_assets.persistence.database import Database
from render_assets.persistence.models import RenderFailure
from render_assets.services.backends import QueueSettings
from render_assets.web.access_log import ACCESS_LOGGER, RedactTokens, redact
from render_assets.web.access_log import install as install_redaction
from render_assets.web.auth import mint_token
from render_assets.web.settings import WebSettings
from render_assets_tests.bullmq_jobs import bull_job
from render_assets_tests.payloads import EXAMPLES, web_app_job
from render_assets_tests.progress_server import Worker, read_sse, serving, unique_prefix
from render_assets_tests.progress_server import web_settings as make_settings

SECRET = "test-secret-not-real"


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


# -- access -------------------------------------------------------------------------------------


def test_with_a_secret_each_render_needs_its_own_token(sqlite_url: str, prefix: str) -> None:
    database = Database(sqlite_url)
    worker = Worker(database, prefix).claim()
    other = Worker(database, prefix).claim()
    worker.stage(Stage.CHARGED)
    worker.complete()
    token = mint_token(SECRET, worker.render_id)
    with serving(make_settings(sqlite_url, prefix, sse_secret=SECRET)) as base:
        for path in (f"/renders/{worker.render_id}/events", f"/renders/{worker.render_id}"):
            missing = httpx.get(base + path)
            assert missing.status_code == 401
            assert missing.headers["www-authenticate"] == "Bearer"
            assert httpx.get(f"{base}{path}?token={'0' * 64}").status_code == 401
            # A valid token, but for another render.
            assert httpx.get(f"{base}{path}?token={mint_token(SECRET, other.render_id)}").status_code == 401
            assert httpx.get(f"{base}{path}", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert httpx.get(f"{base}/renders/{worker.render_id}?token={token}").json()["status"] == "completed"
        bearer = httpx.get(f"{base}/renders/{worker.render_id}", headers={"Authorization": f"Bearer {token}"})
        assert bearer.status_code == 200
        read = read_sse(f"{base}/renders/{worker.render_id}/events?token={token}")
        assert read.status == 200 and read.events[-1].event == "completed"
        # Enqueueing spends credits: with a secret it needs the new render's token too.
        data = web_app_job()
        assert httpx.post(f"{base}/renders", json=data).status_code == 401
        authorized = {"Authorization": f"Bearer {mint_token(SECRET, data['renderId'])}"}
        assert httpx.post(f"{base}/renders", json=data, headers=authorized).status_code == 202
    database.dispose()


def test_tokens_are_the_expiry_and_the_hex_hmac_sha256_of_render_id_and_expiry() -> None:
    # As the web app computes them (README): `${expires}.${crypto.createHmac("sha256", secret)
    # .update(`${renderId}:${expires}`).digest("hex")}`; this value came from Node 20.
    assert mint_token("key", "render-1", ttl_s=60, now=1_700_000_000) == (
        "1700000060.ab94895dc7ee3efd05f9e8bc63c6bc9ba06024db98134b135a320a7b87b8f7b0"
    )


# -- status ---------------------------------------------------------------------------------------


def test_status_comes_from_the_renders_row(database_url: str, db: Database, prefix: str) -> None:
    worker = Worker(db, prefix).claim()
    worker.stage(Stage.CHARGED, Stage.GENERATING)
    with serving(make_settings(database_url, prefix)) as base:
        running = httpx.get(f"{base}/renders/{worker.render_id}").json()
        assert (running["status"], running["stage"], running["progress"]) == ("processing", "generating", 30)
        result = worker.complete()
        done = httpx.get(f"{base}/renders/{worker.render_id}").json()
        assert done["status"] == "completed" and done["imageUrl"] == result["imageUrl"]
        assert "payload" not in done and "claimToken" not in done
        missing = httpx.get(f"{base}/renders/render-never-seen")
        assert missing.status_code == 404 and "waiting in the queue" in missing.json()["error"]


def test_local_storage_urls_point_at_files_served_here(sqlite_url: str, tmp_path: Path, prefix: str) -> None:
    root = tmp_path / "storage"
    image = root / "renders" / "org" / "proj" / "r" / "abc-master.png"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"\x89PNG not really")
    database = Database(sqlite_url)
    worker = Worker(database, prefix).claim()
    with database.session() as session:
        renders.mark_completed(
            session,
            worker.render_id,
            result={"imageUrl": image.as_uri()},
            image_url=image.as_uri(),
            thumbnail_url="https://cdn.example.com/t.webp",
            prompt_hash="0",
        )
    worker.stage(Stage.COMPLETED)
    with serving(make_settings(sqlite_url, prefix, storage_url=root.as_uri())) as base:
        status = httpx.get(f"{base}/renders/{worker.render_id}").json()
        assert status["imageUrl"] == "/files/renders/org/proj/r/abc-master.png"
        assert status["result"]["imageUrl"] == status["imageUrl"]
        assert status["thumbnailUrl"] == "https://cdn.example.com/t.webp"  # not local: unchanged
        event = json.loads(read_sse(f"{base}/renders/{worker.render_id}/events").events[-1].data)
        assert event["imageUrl"] == status["imageUrl"]
        served = httpx.get(base + status["imageUrl"])
        assert served.status_code == 200 and served.content == b"\x89PNG not really"
        assert httpx.get(f"{base}/files/../../etc/passwd").status_code == 404
    database.dispose()


# -- enqueueing -----------------------------------------------------------------------------------


def test_post_enqueues_as_the_web_app_does(sqlite_url: str, prefix: str) -> None:
    settings = make_settings(sqlite_url, prefix)
    data = web_app_job(tier="growth")
    with serving(settings) as base:
        reply = httpx.post(f"{base}/renders", json=data)
    assert reply.status_code == 202
    body = reply.json()
    assert body["renderId"] == data["renderId"]
    assert body["events"] == f"/renders/{data['renderId']}/events"
    job = bull_job(settings.queue.queue_name, body["jobId"])
    assert job.name == "render" and job.data == data
    assert job.opts["attempts"] == 3 and job.opts["priority"] == 1  # growth


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda data: data["settings"].update(resolution="9000x9000"), "settings.resolution"),
        (lambda data: data.pop("organizationId"), "organizationId"),
        (lambda data: data.update(renderId="../../etc"), "renderId"),
        (lambda data: data.update(extra=1), "extra"),
    ],
)
def test_post_refuses_invalid_jobs_naming_the_field(sqlite_url: str, prefix: str, change: object, named: str) -> None:
    settings = make_settings(sqlite_url, prefix)
    data = web_app_job()
    change(data)  # type: ignore[operator]
    with serving(settings) as base:
        reply = httpx.post(f"{base}/renders", json=data)
    assert reply.status_code == 422
    assert named in reply.json()["error"]


def test_post_refuses_what_is_not_a_job(sqlite_url: str, prefix: str) -> None:
    with serving(make_settings(sqlite_url, prefix)) as base:
        not_json = httpx.post(f"{base}/renders", content=b"{nope")
        assert not_json.status_code == 422 and "not JSON" in not_json.json()["error"]
        huge = httpx.post(f"{base}/renders", content=b"x" * (MAX_PAYLOAD_BYTES + 1))
        assert huge.status_code == 413
        assert httpx.get(f"{base}/renders").status_code == 405


# -- the demo page and its examples ---------------------------------------------------------------


def test_demo_page_and_examples(sqlite_url: str, prefix: str) -> None:
    with serving(make_settings(sqlite_url, prefix, examples_dir=EXAMPLES)) as base:
        page = httpx.get(base + "/")
        assert page.status_code == 200 and "EventSource" in httpx.get(f"{base}/static/demo.js").text
        assert '<script src="/static/demo.js">' in page.text
        listed = httpx.get(f"{base}/examples").json()
        assert {example["name"] for example in listed} == {path.stem for path in EXAMPLES.glob("*.json")}
        one = httpx.get(f"{base}/examples/{listed[0]['name']}").json()
        assert one == json.loads((EXAMPLES / f"{listed[0]['name']}.json").read_text())
        assert httpx.get(f"{base}/examples/..%2Fpyproject").status_code == 404
        assert httpx.get(f"{base}/examples/nothing-here").status_code == 404


def test_the_bundled_example_images_are_served_for_the_demo(sqlite_url: str, prefix: str) -> None:
    """The example jobs name https://examples.render-assets.invalid/NAME, which no browser can
    fetch: the demo page maps it to /examples/images/NAME."""
    with serving(make_settings(sqlite_url, prefix, examples_dir=EXAMPLES)) as base:
        for name in example_images.names():
            reply = httpx.get(f"{base}/examples/images/{name}")
            assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
            assert reply.headers["x-content-type-options"] == "nosniff"
            assert reply.content == (example_images.EXAMPLE_IMAGES / name).read_bytes()
        for path in (
            "nothing-here.png",
            "..%2Fplants.json",
            "..%2F..%2Fpyproject.toml",
            "%2Fetc%2Fpasswd",
            "plants.json",
        ):
            assert httpx.get(f"{base}/examples/images/{path}").status_code == 404, path
        assert httpx.get(f"{base}/examples/images/../../pyproject.toml").status_code == 404
        demo = httpx.get(f"{base}/static/demo.js").text
        assert "examples\\.render-assets\\.invalid" in demo and "/examples/images/" in demo


# -- health and metrics ---------------------------------------------------------------------------


def test_healthz_checks_redis_and_the_database(sqlite_url: str, prefix: str) -> None:
    with serving(make_settings(sqlite_url, prefix)) as base:
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok", "redis": "ok", "database": "ok"}
    broken = WebSettings(
        queue=QueueSettings(redis_url="redis://:hunter2@127.0.0.1:1/0", queue_name="q"), database_url=sqlite_url
    )
    with serving(broken) as base:
        reply = httpx.get(f"{base}/healthz")
    assert reply.status_code == 503
    assert reply.json()["redis"].startswith("error: ") and reply.json()["database"] == "ok"
    assert "hunter2" not in reply.text and "127.0.0.1:1" not in reply.text


def test_metrics_in_prometheus_text_format(sqlite_url: str, prefix: str) -> None:
    database = Database(sqlite_url)
    done, running = Worker(database, prefix).claim(), Worker(database, prefix).claim()
    done.stage(Stage.CHARGED, Stage.GENERATING, Stage.GENERATED)
    done.complete()
    running.stage(Stage.CHARGED)
    with database.session() as session:
        for index, failure_class in enumerate(("provider_rate_limit", "provider_rate_limit", "quality_rejected")):
            session.add(
                RenderFailure(
                    render_id=running.render_id,
                    run_id=f"run-{index}",
                    stage="raw_render",
                    failure_class=failure_class,
                    provider="google",
                    final=False,
                    reason="rate limited",
                )
            )
    with serving(make_settings(sqlite_url, prefix)) as base:
        reply = httpx.get(f"{base}/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }
    assert samples[("render_jobs", (("status", "completed"),))] == 1
    assert samples[("render_jobs", (("status", "processing"),))] == 1
    for stage in ("charged", "generating", "generated"):
        assert samples[("render_stage_duration_seconds_count", (("stage", stage),))] == 1
    assert samples[("render_stage_duration_seconds_bucket", (("le", "+Inf"), ("stage", "charged")))] == 1
    assert samples[("render_sse_clients", ())] == 0
    provider_errors = (("kind", "provider_rate_limit"), ("provider", "google"))
    assert samples[("render_provider_errors_total", provider_errors)] == 2
    assert not any(
        name == "render_provider_errors_total" and ("kind", "quality_rejected") in labels for name, labels in samples
    )
    database.dispose()


# -- browsers on other origins, and what the access log keeps -------------------------------------


def test_cors_lets_only_the_configured_origins_in(sqlite_url: str, prefix: str) -> None:
    settings = make_settings(sqlite_url, prefix, cors_origins=("https://app.example.com",))
    with serving(settings) as base:
        allowed = httpx.get(f"{base}/renders/none-yet", headers={"Origin": "https://app.example.com"})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        other = httpx.get(f"{base}/renders/none-yet", headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in other.headers
        preflight = httpx.options(
            f"{base}/renders",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
    with serving(make_settings(sqlite_url, prefix)) as base:  # none configured: same origin only
        closed = httpx.get(f"{base}/renders/none-yet", headers={"Origin": "https://app.example.com"})
        assert "access-control-allow-origin" not in closed.headers


def test_the_access_log_never_shows_tokens() -> None:
    record = logging.LogRecord(
        ACCESS_LOGGER,
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/renders/r1/events?lastEventId=1-0&token=deadbeef", "1.1", 200),
        None,
    )
    assert RedactTokens().filter(record)
    line = record.getMessage()
    assert "deadbeef" not in line
    assert "/renders/r1/events?lastEventId=1-0&token=REDACTED" in line
    assert redact("/renders/r1?TOKEN=abc") == "/renders/r1?TOKEN=REDACTED"
    assert redact("/renders/r1?tokens=abc") == "/renders/r1?tokens=abc"


def test_a_served_request_with_a_token_is_logged_without_it(
    sqlite_url: str, prefix: str, capfd: pytest.CaptureFixture[str]
) -> None:
    install_redaction()  # as `render-assets serve` does
    token = mint_token(SECRET, "render-logged")
    with serving(make_settings(sqlite_url, prefix, sse_secret=SECRET), log_level="info") as base:
        assert httpx.get(f"{base}/renders/render-logged?token={token}").status_code == 404
    logged = capfd.readouterr()
    assert "/renders/render-logged?token=REDACTED" in logged.out + logged.err
    assert token not in logged.out + logged.err


# -- cancel -------------------------------------------------------------------------------------


def test_the_web_app_cancels_a_render_with_its_token_and_hears_the_end_on_its_stream(
    sqlite_url: str, prefix: str
) -> None:
    database = Database(sqlite_url)
    worker = Worker(database, prefix).claim()
    worker.stage(Stage.CHARGED, Stage.GENERATING)
    delivered = Worker(database, prefix).claim()
    delivered.complete()
    token = mint_token(SECRET, worker.render_id)
    with serving(make_settings(sqlite_url, prefix, sse_secret=SECRET)) as base:
        cancel_url = f"{base}/renders/{worker.render_id}/cancel"
        assert httpx.post(cancel_url).status_code == 401  # the same token as the render's other routes
        assert httpx.post(f"{cancel_url}?token={mint_token(SECRET, 'render-other')}").status_code == 401

        reply = httpx.post(cancel_url, headers={"Authorization": f"Bearer {token}"})

        assert reply.status_code == 200
        assert reply.json() == {
            "renderId": worker.render_id,
            "outcome": "cancelled",
            "status": "cancelled",
            "charged": False,
        }
        read = read_sse(f"{base}/renders/{worker.render_id}/events?token={token}")
        assert read.ended and read.events[-1].event == "cancelled"
        assert json.loads(read.events[-1].data)["status"] == "cancelled"
        status = httpx.get(f"{base}/renders/{worker.render_id}?token={token}").json()
        assert (status["status"], status["stage"]) == ("cancelled", "cancelled")
        again = httpx.post(f"{cancel_url}?token={token}")
        assert (again.status_code, again.json()["outcome"]) == (200, "already_cancelled")
        late = httpx.post(
            f"{base}/renders/{delivered.render_id}/cancel?token={mint_token(SECRET, delivered.render_id)}"
        )
        assert (late.status_code, late.json()["outcome"], late.json()["status"]) == (409, "too_late", "completed")
    database.dispose()
