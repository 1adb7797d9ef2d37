"""The code location loads as the daemon and the UI load it."""

from __future__ import annotations

import subprocess
import sys

from dagster import AssetKey, DefaultSensorStatus

from render_assets.orchestration.definitions import defs


def test_the_render_job_materializes_the_four_assets_in_order() -> None:
    job = defs.resolve_job_def("render_job")
    assert job.partitions_def is not None and job.partitions_def.name == "render_jobs"  # type: ignore[attr-defined]
    graph = defs.resolve_asset_graph()
    upstream = {
        key.path[-1]: {parent.path[-1] for parent in graph.get(key).parent_keys} for key in graph.get_all_asset_keys()
    }
    assert upstream == {
        "prompt_rules": set(),
        "render_prompt": {"prompt_rules"},
        "raw_render": {"render_prompt"},
        "qa_verdict": {"raw_render", "render_prompt"},  # the prompt hash it records with a held render
        "cdn_image": {"raw_render", "qa_verdict", "render_prompt"},
    }
    assert graph.get(AssetKey("prompt_rules")).is_external  # observed, never materialized
    assert job.executor_def.name == "in_process"
    assert AssetKey("cdn_image") in graph.get_all_asset_keys()


def test_every_render_asset_carries_the_failure_hook_and_a_computed_code_version() -> None:
    """On the assets, not the job: backfills and "Materialize" run Dagster's asset job."""
    graph = defs.resolve_asset_graph()
    for name in ("render_prompt", "raw_render", "qa_verdict", "cdn_image"):
        assets_def = graph.get(AssetKey(name)).assets_def
        assert {hook.name for hook in assets_def.hook_defs} == {"settle_failed_render"}, name
        assert graph.get(AssetKey(name)).code_version, name


def test_the_queue_sensor_runs_without_a_click_in_the_ui() -> None:
    sensor = defs.resolve_sensor_def("render_job_sensor")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    assert sensor.job_name == "render_job"


def test_the_code_location_imports_no_provider_or_cloud_sdk() -> None:
    """Heavy SDKs are imported where used, so the code server and each run start fast."""
    probe = (
        "import sys, render_assets.orchestration.definitions; "
        "print(','.join(m for m in ('openai', 'google.cloud.aiplatform', 'dagster_gcp', 'google.cloud.storage')"
        " if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
