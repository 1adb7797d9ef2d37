"""Acceptance: re-rendering through Dagster's lineage on the real daemon.

Three renders are delivered to the web app (Node BullMQ), two in the `modern` style and one in
`landscape`. A copy of the code location then gets a reworded `modern` template and the daemon is
restarted on it, as a deploy would: Dagster reports exactly the two modern renders stale, with the
cause, and `render-assets rerender --stale --wait` re-renders only those in one backfill. The web
app hears of each once (webhook, and the render's event stream after its original `completed`),
the old URLs still serve, no credit moves and BullMQ's jobs are untouched. A re-render while the
provider is down leaves the render delivered. (That an unchanged render re-rendered writes
nothing is shown in-process, in test_rerender.py: a backfill more here costs CI a minute.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
import redis

from render_assets.migrations import scratch_database
from render_assets_tests.conftest import POSTGRES_ADMIN_URL
from render_assets_tests.e2e.conftest import PROJECT_ROOT, RenderStack, build_stack, running
from render_assets_tests.payloads import web_app_job
from render_assets_tests.progress_server import read_sse, server_process
from render_assets_tests.webhook_inbox import WebhookInbox

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

SECRET = "e2e-rerender-webhook-secret"
MODERN_BASE = "A modern contemporary landscape design with"
STALE_WITHIN_S = 90.0  # prompt_rules_sensor ticks every 30 s


@pytest.fixture
def code_copy(tmp_path: Path) -> Path:
    """A copy of the code location the daemon loads, and its workspace file."""
    code = tmp_path / "code"
    shutil.copytree(
        PROJECT_ROOT / "render_assets", code / "render_assets", ignore=shutil.ignore_patterns("__pycache__")
    )
    (code / "workspace.yaml").write_text(
        "load_from:\n  - python_module:\n      module_name: render_assets.orchestration.definitions\n"
        "      location_name: render_assets\n      working_directory: .\n"
    )
    return code


@pytest.fixture
def lineage_stack(tmp_path: Path, code_copy: Path, inbox: WebhookInbox) -> Iterator[RenderStack]:
    overrides = {"RENDER_WEBHOOK_URL": inbox.url, "RENDER_WEBHOOK_SECRET": SECRET, "PYTHONPATH": str(code_copy)}
    with scratch_database(POSTGRES_ADMIN_URL, "render_assets_e2e") as database_url:
        stack = build_stack(
            tmp_path / "stack", database_url, overrides=overrides, workspace=code_copy / "workspace.yaml"
        )
        with running(stack):
            yield stack


def reword_modern_template(code: Path, base: str) -> None:
    styles = code / "render_assets" / "domain" / "prompt_styles.py"
    text = styles.read_text()
    current = next(line for line in text.splitlines() if 'base="A ' in line and "modern" in line.lower())
    styles.write_text(text.replace(current, f'            base="{base}",'))


def restart(stack: RenderStack, **env: str) -> None:
    """A deploy: stop the daemon, change what changed, start it on the code location as it is now."""
    stack.stop()
    stack.env.update(env)
    stack.start()


def cli_json(stack: RenderStack, *args: str, timeout_s: float = 60.0) -> Any:
    shown = stack.render_assets(*args, "--json", timeout_s=timeout_s)
    assert shown.returncode in (0, 1), f"render-assets {' '.join(args)}: {shown.returncode}\n{shown.stderr}"
    return json.loads(shown.stdout)


def bullmq_hashes(stack: RenderStack, job_ids: list[str]) -> dict[str, dict[bytes, bytes]]:
    client = redis.Redis.from_url(stack.redis_url)
    return {job_id: client.hgetall(f"bull:{stack.queue_name}:{job_id}") for job_id in job_ids}


def local_file(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def wait_until_stale(stack: RenderStack, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + STALE_WITHIN_S
    while True:
        stale = cli_json(stack, "renders", "stale")
        if stale["stale"] >= count or time.monotonic() > deadline:
            return dict(stale)
        time.sleep(3)


def verified(received: Any) -> dict[str, Any]:
    """The body, once its signature checks out as the web app checks it."""
    timestamp, digest = (part.split("=", 1)[1] for part in received.headers["x-render-signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{timestamp}.{received.body}".encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(digest, expected), "webhook signature does not verify"
    body: dict[str, Any] = json.loads(received.body)
    return body


def test_a_template_change_rerenders_exactly_its_renders_and_tells_the_web_app(
    lineage_stack: RenderStack, code_copy: Path, inbox: WebhookInbox
) -> None:
    stack = lineage_stack
    org = f"org-lineage-{uuid.uuid4().hex[:8]}"
    jobs = {
        "modern-a": "a modern backyard with a flagstone path",
        "modern-b": "a minimalist modern patio with a small pond",
        "landscape": "a cozy backyard with a flagstone path",
    }
    data = {}
    for name, words in jobs.items():
        job = web_app_job(render_id=f"lineage-{name}-{uuid.uuid4().hex[:8]}", organization_id=org)
        job["prompt"]["user"] = words
        data[name] = job
    events = stack.producer([{"data": job, "opts": {"attempts": 3}} for job in data.values()], timeout_s=120)
    completed = {event["returnvalue"]["renderId"]: event for event in events if event["event"] == "completed"}
    assert set(completed) == {job["renderId"] for job in data.values()}, events[-3:]
    job_ids = [str(event["jobId"]) for event in completed.values()]
    first_urls = {render_id: event["returnvalue"]["imageUrl"] for render_id, event in completed.items()}
    bullmq_before = bullmq_hashes(stack, job_ids)
    credits_before = cli_json(stack, "credits", "show", org)
    assert cli_json(stack, "renders", "stale")["stale"] == 0

    # A deploy with the `modern` template reworded.
    reword_modern_template(code_copy, "A bold modern garden of clean lines and layered planting with")
    restart(stack)
    deployed_at = time.monotonic()
    stale = wait_until_stale(stack, 2)
    stale_after_s = time.monotonic() - deployed_at

    modern = {data["modern-a"]["renderId"], data["modern-b"]["renderId"]}
    assert {render["renderId"] for render in stale["renders"]} == modern, stale
    for render in stale["renders"]:
        assert render["assets"] == {
            "render_prompt": ["prompt_rules has a new data version: style template 'modern' changed"]
        }

    rerender_started = time.monotonic()
    summary = cli_json(stack, "rerender", "--stale", "--wait", timeout_s=300)
    rerender_s = time.monotonic() - rerender_started

    assert (summary["requested"], summary["rerendered"], summary["failed"]) == (2, 2, 0), summary
    assert {item["renderId"] for item in summary["renders"]} == modern
    assert cli_json(stack, "renders", "stale")["stale"] == 0
    posted = [verified(received) for received in inbox.received]
    assert sorted(body["renderId"] for body in posted) == sorted(modern)  # one each
    with server_process(stack.env) as (base, _):
        for body in posted:
            render_id = body["renderId"]
            assert body["event"] == "render.rerendered" and body["version"] == 2
            assert body["result"]["imageUrl"] != first_urls[render_id]
            read = read_sse(f"{base}/renders/{render_id}/events")
            names = [event.event for event in read.events]
            assert names[-2:] == ["completed", "rerendered"] and names.count("rerendered") == 1, names
            served = json.loads(read.events[-1].data)["result"]  # local file URLs served under /files
            assert served["imageUrl"] == "/files/" + body["result"]["imageUrl"].split("/storage/", 1)[1]
            assert {key: served[key] for key in ("promptHash", "metadata")} == {
                key: body["result"][key] for key in ("promptHash", "metadata")
            }
            status = cli_json(stack, "status", render_id)
            assert (status["status"], status["version"], status["result"]) == ("completed", 2, body["result"])
            assert local_file(first_urls[render_id]).is_file()  # the URLs the web app got still serve
        landscape = data["landscape"]["renderId"]
        read = read_sse(f"{base}/renders/{landscape}/events")
        assert [event.event for event in read.events][-1] == "completed"
    assert cli_json(stack, "status", landscape)["version"] == 1
    assert cli_json(stack, "credits", "show", org)["balance"] == credits_before["balance"]
    assert cli_json(stack, "credits", "audit") == {"mismatches": []}
    assert bullmq_hashes(stack, job_ids) == bullmq_before  # byte for byte

    # A re-render while the provider is down leaves the render as it was.
    target = data["modern-a"]["renderId"]
    reword_modern_template(code_copy, "A serene modern courtyard with")
    restart(
        stack,
        RENDER_PROVIDERS="openai",
        OPENAI_API_KEY="sk-e2e-not-a-real-key",
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",  # nothing listens: connection refused
    )
    before = cli_json(stack, "status", target)
    failed_started = time.monotonic()
    failed = cli_json(stack, "rerender", target, "--wait", timeout_s=300)
    failed_s = time.monotonic() - failed_started
    assert (failed["failed"], failed["rerendered"]) == (1, 0), failed
    after = cli_json(stack, "status", target)
    assert {key: after[key] for key in ("status", "stage", "progress", "version", "result", "imageUrl")} == {
        key: before[key] for key in ("status", "stage", "progress", "version", "result", "imageUrl")
    }
    assert len(inbox.received) == 2
    assert cli_json(stack, "credits", "audit") == {"mismatches": []}
    assert bullmq_hashes(stack, job_ids) == bullmq_before
    print(
        f"\n[lineage] 3 delivered, template 'modern' changed: {stale['stale']} stale "
        f"{stale_after_s:.0f} s after the deploy; `rerender --stale --wait`: {summary['rerendered']} "
        f"re-rendered in {rerender_s:.0f} s, {len(posted)} webhooks; provider down: failed in {failed_s:.0f} s, "
        "render unchanged"
    )
