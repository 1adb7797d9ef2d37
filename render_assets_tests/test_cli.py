"""`render-assets` as an operator uses it, against real Redis and a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from render_assets.cli import main
from render_assets_tests.bullmq_jobs import bull_job
from render_assets_tests.conftest import REDIS_URL
from render_assets_tests.payloads import EXAMPLES, web_app_job


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str, queue_name: str, tmp_path: Path) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("RENDER_QUEUE_NAME", queue_name)
    monkeypatch.setenv("RENDER_DATA_DIR", str(tmp_path / "data"))
    return queue_name


def test_enqueue_adds_jobs_as_the_web_app_does(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(EXAMPLES.glob("*.json"))
    assert main(["enqueue", *map(str, files)]) == 0
    ids = capsys.readouterr().out.split()
    assert len(ids) == len(files)
    by_tier = {}
    for job_id, path in zip(ids, files, strict=True):
        job = bull_job(env, job_id)
        assert job.name == "render"
        assert job.data == json.loads(path.read_text())
        assert job.opts["attempts"] == 3 and job.opts["backoff"] == {"type": "exponential", "delay": 1000}
        by_tier[job.data["subscriptionTier"]] = job.opts["priority"]
    assert by_tier == {"growth": 1, "pro": 3, "starter": 5}


def test_enqueue_refuses_an_invalid_payload_unless_raw(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = web_app_job()
    bad["settings"]["format"] = "GIF"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    assert main(["enqueue", str(path)]) == 1
    assert "settings.format" in capsys.readouterr().err
    assert main(["enqueue", "--raw", str(path)]) == 0
    assert capsys.readouterr().out.strip()


def test_credits_grant_show_and_status(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["credits", "grant", "org-cli", "25"]) == 0
    assert "balance 125" in capsys.readouterr().out
    assert main(["credits", "show", "org-cli", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["balance"] == 125
    assert [(row["kind"], row["amount"]) for row in shown["transactions"]] == [("grant", 25)]
    assert main(["credits", "show", "org-nobody"]) == 1
    assert main(["status", "no-such-render", "--json"]) == 1
    assert "no render no-such-render" in capsys.readouterr().err


def test_db_upgrade_creates_the_schema(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RENDER_DATA_DIR", str(tmp_path / "fresh"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "fresh" / "render_assets.db").is_file()
    assert main(["credits", "grant", "org-new", "1"]) == 0
