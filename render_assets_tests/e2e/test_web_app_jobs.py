"""Acceptance: the web app's jobs, enqueued with Node BullMQ, go through the real Dagster daemon.

The producer (render_assets_tests/node/producer.mjs) plays the web app: it adds jobs with the web
app's options and reports what the web app would see on QueueEvents. The tests then check the
stored images, the renders rows (through the `render-assets` CLI) and the credit ledger.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from PIL import Image
from sqlalchemy import create_engine, text

from render_assets.domain.payload import parse_job
from render_assets.domain.pricing import render_cost
from render_assets.domain.queue_contract import job_options
from render_assets.persistence import ledger
from render_assets.persistence.database import Database
from render_assets_tests.e2e.conftest import RenderStack
from render_assets_tests.payloads import web_app_job

# `make test` runs the e2e tests in one process, after the others, so they share one daemon.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

PRODUCER_TIMEOUT_S = 90.0
DEFAULT_CREDITS = 100
HEX64 = re.compile(r"^[0-9a-f]{64}$")
FORMATS = {"PNG": "PNG", "JPEG": "JPEG"}


def _uid() -> str:
    return uuid.uuid4().hex


def _by_job(events: list[dict[str, Any]], job_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event.get("jobId") in job_ids:
            grouped[event["jobId"]].append(event)
    return grouped


def _added(events: list[dict[str, Any]]) -> dict[str, str]:
    """renderId → BullMQ job id, from the producer's `added` lines."""
    return {event["renderId"]: str(event["jobId"]) for event in events if event["event"] == "added"}


def _local_path(url: str, storage_dir: Path) -> Path:
    parsed = urlparse(url)
    assert parsed.scheme == "file", url
    path = Path(unquote(parsed.path))
    assert path.resolve().is_relative_to(storage_dir.resolve()), f"{path} is outside the stack's storage"
    return path


def _ledger(database_url: str, *, organizations: list[str], render_ids: list[str]) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT organization_id, render_id, kind, amount, balance_after, idempotency_key "
                    "FROM credit_transactions "
                    "WHERE organization_id = ANY(:organizations) OR render_id = ANY(:render_ids) ORDER BY id"
                ),
                {"organizations": organizations, "render_ids": render_ids},
            )
            return [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()


def _balance(database_url: str, organization_id: str) -> int | None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                text("SELECT credit_balance FROM organizations WHERE id = :id"), {"id": organization_id}
            ).scalar_one_or_none()
    finally:
        engine.dispose()


def _statuses(stack: RenderStack, render_ids: list[str]) -> dict[str, subprocess.CompletedProcess[str]]:
    """`render-assets status <id> --json` for each render, run side by side (each costs an import)."""
    with ThreadPoolExecutor(max_workers=len(render_ids)) as pool:
        shown = pool.map(lambda render_id: stack.render_assets("status", render_id, "--json"), render_ids)
        return dict(zip(render_ids, shown, strict=True))


def _status_json(render_id: str, shown: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert shown.returncode == 0, f"render-assets status {render_id}: {shown.returncode}\n{shown.stderr}"
    status: dict[str, Any] = json.loads(shown.stdout)
    return status


def _no_timeout(events: list[dict[str, Any]]) -> None:
    assert events, "the producer printed nothing"
    assert events[-1]["event"] != "timeout", f"jobs still pending after {PRODUCER_TIMEOUT_S:.0f}s: {events[-1]}"


def test_web_app_jobs_render_and_settle(render_stack: RenderStack) -> None:
    stack = render_stack
    run = _uid()[:12]
    org = f"org-e2e-{_uid()}"
    broke_org = f"org-e2e-broke-{_uid()}"
    requested = {
        f"e2e-{run}-square": ("1024x1024", "PNG", 80),
        f"e2e-{run}-wide": ("1536x1024", "JPEG", None),
        f"e2e-{run}-tall": ("768x1344", "PNG", 40),
    }
    valid = {
        render_id: web_app_job(
            render_id=render_id, organization_id=org, resolution=resolution, image_format=fmt, quality=quality
        )
        for render_id, (resolution, fmt, quality) in requested.items()
    }
    invalid_id = f"e2e-{run}-invalid"
    invalid = web_app_job(render_id=invalid_id, organization_id=org, resolution="9000x9000")
    broke_id = f"e2e-{run}-broke"
    broke = web_app_job(render_id=broke_id, organization_id=broke_org, resolution="512x512", quality=60)

    costs = {render_id: render_cost(parse_job(data).settings) for render_id, data in valid.items()}
    broke_cost = render_cost(parse_job(broke).settings)
    # The web app's options; an invalid payload still gets its tier's options from the web app.
    invalid_options = job_options(parse_job({**invalid, "settings": {**invalid["settings"], "resolution": "512x512"}}))

    database = Database(stack.database_url)
    try:
        with database.session() as session:
            ledger.ensure_organization(session, broke_org, 0)
    finally:
        database.dispose()
    assert _balance(stack.database_url, broke_org) == 0

    jobs = [{"data": data, "opts": job_options(parse_job(data))} for data in valid.values()]
    jobs.append({"data": invalid, "opts": invalid_options})
    jobs.append({"data": broke, "opts": job_options(parse_job(broke))})

    events = stack.producer(jobs, timeout_s=PRODUCER_TIMEOUT_S)
    _no_timeout(events)
    job_ids = _added(events)
    assert set(job_ids) == {*valid, invalid_id, broke_id}
    per_job = _by_job(events, set(job_ids.values()))
    statuses = _statuses(stack, [*valid, invalid_id, broke_id])

    # --- the delivered renders, as the web app sees them -----------------------------------
    for render_id, (resolution, fmt, _quality) in requested.items():
        job_id = job_ids[render_id]
        seen = per_job[job_id]
        kinds = [event["event"] for event in seen]
        assert "failed" not in kinds, f"{render_id}: {seen}"
        assert kinds.count("completed") == 1, f"{render_id}: {kinds}"
        assert kinds[-1] == "completed", f"{render_id}: events after completion: {kinds}"
        percents = [event["data"]["percent"] for event in seen if event["event"] == "progress"]
        assert len(percents) >= 3, f"{render_id}: too few progress events {percents}"
        assert percents == sorted(percents), f"{render_id}: progress went backwards: {percents}"
        assert percents[-1] == 100, f"{render_id}: progress ended at {percents[-1]}"
        for event in seen:
            if event["event"] == "progress":
                assert {"percent", "stage", "message"} <= set(event["data"]), event

        result = seen[-1]["returnvalue"]
        assert isinstance(result, dict), result
        assert {"renderId", "imageUrl", "thumbnailUrl", "processingTime", "promptHash", "metadata"} <= set(result)
        assert result["renderId"] == render_id
        assert HEX64.match(result["promptHash"]), result["promptHash"]
        assert isinstance(result["processingTime"], int) and result["processingTime"] >= 0
        width, height = (int(side) for side in resolution.split("x"))
        metadata = result["metadata"]
        assert (metadata["width"], metadata["height"], metadata["format"]) == (width, height, fmt), metadata

        image_path = _local_path(result["imageUrl"], stack.storage_dir)
        assert metadata["fileSize"] == image_path.stat().st_size
        with Image.open(image_path) as image:
            image.load()
            assert image.size == (width, height)
            assert image.format == FORMATS[fmt]
        with Image.open(_local_path(result["thumbnailUrl"], stack.storage_dir)) as thumbnail:
            thumbnail.load()
            assert thumbnail.size == (300, 300)

        state = stack.bull_job(job_id)
        assert state is not None and state["state"] == "completed", state
        assert state["attemptsMade"] == 1, state

        status = _status_json(render_id, statuses[render_id])
        assert status["status"] == "completed", status
        assert status["progress"] == 100, status
        assert status["imageUrl"] == result["imageUrl"]
        assert status["creditCost"] == costs[render_id]

    # --- the invalid job: refused at claim, never retried ----------------------------------
    invalid_events = per_job[job_ids[invalid_id]]
    failed = [event for event in invalid_events if event["event"] == "failed"]
    assert len(failed) == 1, invalid_events
    assert "settings.resolution" in failed[0]["failedReason"], failed[0]
    assert not [event for event in invalid_events if event["event"] in ("progress", "completed")], invalid_events
    state = stack.bull_job(job_ids[invalid_id])
    assert state is not None and state["state"] == "failed" and state["attemptsMade"] == 1, state
    shown = statuses[invalid_id]
    assert shown.returncode == 1, f"an invalid job left a renders row: {shown.stdout}"

    # --- the organization without credits: failed for good, not retried --------------------
    broke_events = per_job[job_ids[broke_id]]
    failed = [event for event in broke_events if event["event"] == "failed"]
    assert len(failed) == 1, broke_events
    assert failed[0]["failedReason"] == f"insufficient credits: need {broke_cost}, have 0", failed[0]
    assert not [event for event in broke_events if event["event"] == "completed"], broke_events
    state = stack.bull_job(job_ids[broke_id])
    assert state is not None and state["state"] == "failed" and state["attemptsMade"] == 1, state
    status = _status_json(broke_id, statuses[broke_id])
    assert status["status"] == "failed" and "insufficient credits" in (status["error"] or ""), status

    # --- the ledger: one charge per delivered render, nothing else -------------------------
    rows = _ledger(stack.database_url, organizations=[org, broke_org], render_ids=[*valid, invalid_id, broke_id])
    charges = [row for row in rows if row["kind"] == "charge"]
    assert sorted((row["render_id"], row["amount"]) for row in charges) == sorted(
        (render_id, -cost) for render_id, cost in costs.items()
    ), rows
    assert all(row["organization_id"] == org for row in charges), rows
    assert not [row for row in rows if row["kind"] == "refund"], rows
    assert not [row for row in rows if row["render_id"] in (invalid_id, broke_id)], rows
    assert not [row for row in rows if row["organization_id"] == broke_org], rows
    assert len(rows) == len(valid), rows
    assert _balance(stack.database_url, org) == DEFAULT_CREDITS - sum(costs.values())
    assert _balance(stack.database_url, broke_org) == 0

    # --- timing --------------------------------------------------------------------------
    first_added = min(event["at"] for event in events if event["event"] == "added")
    last_completed = max(event["at"] for event in events if event["event"] == "completed")
    last_event = max(event["at"] for event in events)
    processing = {
        render_id: per_job[job_ids[render_id]][-1]["returnvalue"]["processingTime"] for render_id in requested
    }
    print(
        f"\n[e2e] 3 renders: first add → last completed {(last_completed - first_added) / 1000:.2f}s; "
        f"→ last event {(last_event - first_added) / 1000:.2f}s; processingTime ms {processing}"
    )


def test_final_failure_refunds_once(render_stack: RenderStack) -> None:
    """A render that fails after its charge on every attempt is retried by BullMQ, then refunded once.

    No payload makes the local provider or the QA check fail (the provider draws exactly the
    requested size, never a blank image, and payload validation keeps sizes in range), so the
    fault is injected in the environment instead: a plain file sits where this organization's
    render folder would go, so storing the delivered image fails (`cdn_image`) on every attempt.
    """
    stack = render_stack
    org = f"org-e2e-refund-{_uid()}"
    render_id = f"e2e-{_uid()[:12]}-refund"
    data = web_app_job(render_id=render_id, organization_id=org, resolution="1024x1024", quality=80)
    cost = render_cost(parse_job(data).settings)
    blocker = stack.storage_dir / "renders" / org
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder: the render's images cannot be stored under here\n")
    options = {**job_options(parse_job(data)), "attempts": 2, "backoff": {"type": "fixed", "delay": 100}}

    events = stack.producer([{"data": data, "opts": options}], timeout_s=PRODUCER_TIMEOUT_S)
    _no_timeout(events)
    job_id = _added(events)[render_id]
    seen = _by_job(events, {job_id})[job_id]
    assert not [event for event in seen if event["event"] == "completed"], seen
    failed = [event for event in seen if event["event"] == "failed"]
    assert failed, seen
    assert failed[-1]["failedReason"].startswith("could not store the images"), failed[-1]
    assert str(stack.storage_dir) not in failed[-1]["failedReason"], "server paths must not reach the web app"
    stages = [event["data"]["stage"] for event in seen if event["event"] == "progress"]
    assert stages.count("charged") == 2, f"expected two attempts, progress stages {stages}"
    assert stages[-1] == "failed", stages

    state = stack.bull_job(job_id)
    assert state is not None, "job vanished"
    assert state["state"] == "failed" and state["attemptsMade"] == 2, state

    status = _status_json(render_id, stack.render_assets("status", render_id, "--json"))
    assert status["status"] == "failed", status
    assert status["imageUrl"] is None, status

    rows = _ledger(stack.database_url, organizations=[org], render_ids=[render_id])
    assert [(row["kind"], row["amount"]) for row in rows] == [("charge", -cost), ("refund", cost)], rows
    assert [row["balance_after"] for row in rows] == [DEFAULT_CREDITS - cost, DEFAULT_CREDITS], rows
    assert _balance(stack.database_url, org) == DEFAULT_CREDITS
    wall = max(event["at"] for event in seen) - min(event["at"] for event in events if event["event"] == "added")
    print(f"\n[e2e] refund path: add → final failure {wall / 1000:.2f}s, failed events {len(failed)}")
