"""What a run leaves for operators: numeric metadata the Dagster UI plots, timing rows, and log
lines that all carry the render's id."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import FloatMetadataValue, IntMetadataValue
from sqlalchemy import select

from render_assets.observability.logs import JsonFormatter, RenderContextFilter, configure_logging, log_context
from render_assets.persistence.models import StageTiming
from render_assets_tests.payloads import web_app_job
from render_assets_tests.stack import InProcessStack, in_process_stack
from render_assets_tests.test_sentry_events import PROMPT, LeakyProviders

STAGES = ("render_prompt", "raw_render", "qa_verdict", "cdn_image")


@pytest.fixture
def stack(sqlite_url: str, queue_name: str, tmp_path: Path) -> Iterator[InProcessStack]:
    with in_process_stack(sqlite_url, queue_name, tmp_path) as stack:
        yield stack


def numeric(value: Any) -> float:
    assert isinstance(value, FloatMetadataValue | IntMetadataValue), value
    assert value.value is not None
    return float(value.value)


def test_every_step_reports_its_duration_and_the_ui_metrics_are_numbers(stack: InProcessStack) -> None:
    data = web_app_job()
    stack.enqueue(data)

    [result] = stack.run_all()

    assert result.success
    metadata = {
        event.asset_key.path[-1]: event.materialization.metadata for event in result.get_asset_materialization_events()
    }
    assert set(metadata) == set(STAGES)
    for stage in STAGES:
        assert numeric(metadata[stage]["duration_s"]) >= 0
    raw = metadata["raw_render"]
    assert raw["provider"].value == "local"
    assert numeric(raw["latency_s"]) >= 0 and numeric(raw["cost_estimate_usd"]) >= 0
    qa = metadata["qa_verdict"]
    score = qa["qa_score"] if "qa_score" in qa else qa["score"]
    assert 0 <= numeric(score) <= 1
    with stack.database.session() as session:
        rows = session.execute(select(StageTiming).where(StageTiming.render_id == data["renderId"])).scalars().all()
        timings = {row.stage: row for row in rows}
    assert set(timings) == set(STAGES) and all(row.outcome == "success" for row in rows)
    assert timings["raw_render"].provider == "local"
    assert timings["qa_verdict"].qa_score == pytest.approx(numeric(score))


def test_with_log_format_json_every_project_line_of_a_run_carries_the_render(
    sqlite_url: str, queue_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    providers = LeakyProviders(state_prefix=f"test:{queue_name}")
    configure_logging("json", "INFO")
    try:
        with in_process_stack(sqlite_url, queue_name, tmp_path, providers=providers) as stack:
            data = web_app_job()
            data["prompt"]["user"] = PROMPT
            stack.enqueue(data)
            [request] = stack.tick().run_requests or []
            capsys.readouterr()
            result = stack.execute(request)
            lines = capsys.readouterr().err.splitlines()
    finally:
        configure_logging("text", "INFO")

    assert not result.success
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    ours = [entry for entry in entries if entry["logger"].startswith("render_assets")]
    assert {"step render_prompt finished", "step raw_render failed"} <= {
        e["message"].rsplit(" in ", 1)[0] for e in ours
    }
    assert any(entry["message"].startswith("render ") and "provider_error" in entry["message"] for entry in ours)
    assert all(entry["renderId"] == data["renderId"] for entry in ours), ours
    assert all(entry["runId"] == result.run_id and entry["stage"] for entry in ours)
    leaked = [line for line in lines if PROMPT in line or "sk-proj" in line]
    assert all(not line.startswith("{") for line in leaked), leaked  # ours are scrubbed; Dagster's own are not ours


def test_the_json_formatter_scrubs_and_adds_the_context() -> None:
    record = logging.LogRecord("render_assets.x", logging.ERROR, __file__, 1, "key %s", ("sk-live-ABCdef123456",), None)
    with log_context(renderId="render-1", stage="raw_render"):
        RenderContextFilter().filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "key [Filtered]"
    assert (entry["renderId"], entry["stage"], entry["level"]) == ("render-1", "raw_render", "error")
    assert "runId" not in entry


def test_bad_log_settings_are_named() -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT must be one of text, json"):
        configure_logging("xml")
    with pytest.raises(ValueError, match="LOG_LEVEL must be a logging level"):
        configure_logging("json", "LOUD")
