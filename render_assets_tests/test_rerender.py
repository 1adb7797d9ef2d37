"""Re-rendering through Dagster's lineage, in-process: staleness from code and data versions, a
re-render delivered as a new version the web app is told about, and operator runs that charge
nothing, touch no BullMQ job and leave a render as it was when they fail."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import redis
from dagster import AssetKey, Definitions, build_sensor_context

from render_assets import cli
from render_assets.domain import prompt_styles
from render_assets.orchestration.assets import RENDER_ASSETS
from render_assets.orchestration.lineage import PROMPT_RULES, stale_renders
from render_assets.orchestration.resources import ProvidersResource
from render_assets.orchestration.run_identity import OUTCOME_TAG
from render_assets.orchestration.sensors.prompt_rules import prompt_rules_sensor
from render_assets.persistence import render_versions, renders
from render_assets.persistence.models import RenderFailure, RenderStatus
from render_assets_tests.bullmq_jobs import bull_job
from render_assets_tests.conftest import REDIS_URL
from render_assets_tests.payloads import web_app_job
from render_assets_tests.stack import InProcessStack, in_process_stack
from render_assets_tests.webhook_inbox import WebhookInbox

SECRET = "rerender-webhook-secret"


@pytest.fixture
def stack(sqlite_url: str, queue_name: str, tmp_path: Path, inbox: WebhookInbox) -> Iterator[InProcessStack]:
    with in_process_stack(sqlite_url, queue_name, tmp_path, webhook_url=inbox.url, webhook_secret=SECRET) as stack:
        yield stack


def deliver(stack: InProcessStack, *, style_words: str = "a cozy backyard with a flagstone path") -> dict[str, Any]:
    data = web_app_job()
    data["prompt"]["user"] = style_words
    job_id = stack.enqueue(data)
    [run] = stack.run_all()
    assert run.success
    return {"data": data, "render_id": data["renderId"], "job_id": job_id, "run": run}


def delivered_objects(stack: InProcessStack) -> dict[str, bytes]:
    store = stack.resources["storage"].get()
    return {key: store.get(key) for key in store.keys_under("renders")}


def stream(render_id: str) -> list[tuple[str, dict[str, Any]]]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    return [(fields["event"], json.loads(fields["data"])) for _, fields in client.xrange(f"render-events:{render_id}")]


def row(stack: InProcessStack, render_id: str) -> dict[str, Any]:
    with stack.database.session() as session:
        render = renders.require(session, render_id)
        return {
            "status": render.status,
            "stage": render.stage,
            "progress": render.progress,
            "image_url": render.image_url,
            "result": render.result,
            "version": render.current_version,
            "versions": [version.version for version in render_versions.history(session, render_id)],
        }


def observe_rules(stack: InProcessStack, cursor: str | None) -> str | None:
    """One tick of prompt_rules_sensor, its observations recorded as the daemon would."""
    with build_sensor_context(
        instance=stack.instance, resources=stack.resources, definitions=stack.definitions, cursor=cursor
    ) as context:
        result = prompt_rules_sensor(context)
    for event in getattr(result, "asset_events", None) or []:
        stack.instance.report_runless_asset_event(event)
    return getattr(result, "cursor", cursor)


def deliver_then_reword_modern(stack: InProcessStack, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A modern render delivered; then the `modern` template reworded, as a designer's edit of the
    code location would."""
    first = deliver(stack, style_words="a modern backyard with a flagstone path")
    modern = prompt_styles.TEMPLATES["modern"]
    changed = dataclasses.replace(modern, base="A bold modern landscape design of clean lines with")
    monkeypatch.setitem(prompt_styles.TEMPLATES, "modern", changed)
    return first


def test_a_changed_template_makes_exactly_its_renders_stale_with_the_cause(
    stack: InProcessStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    modern = deliver(stack, style_words="a modern backyard with a flagstone path")
    landscape = deliver(stack)
    ids = [modern["render_id"], landscape["render_id"]]
    graph = stack.definitions.resolve_asset_graph()
    cursor = observe_rules(stack, None)
    assert stale_renders(stack.instance, graph, ids) == []

    template = prompt_styles.TEMPLATES["modern"]
    monkeypatch.setitem(prompt_styles.TEMPLATES, "modern", dataclasses.replace(template, style="brutalist concrete"))
    observe_rules(stack, cursor)

    [stale] = stale_renders(stack.instance, graph, ids)
    assert stale.render_id == modern["render_id"] and stale.first_stale == "render_prompt"
    assert [(asset.asset, asset.causes) for asset in stale.assets] == [
        ("render_prompt", ["prompt_rules has a new data version: style template 'modern' changed"])
    ]


def test_a_rerender_is_a_new_version_the_web_app_is_told_about_and_nothing_is_charged(
    stack: InProcessStack, inbox: WebhookInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = deliver_then_reword_modern(stack, monkeypatch)
    render_id = first["render_id"]
    before, ledger, job = row(stack, render_id), stack.ledger(render_id), bull_job(stack.queue_name, first["job_id"])
    old_objects = delivered_objects(stack)

    rerun = stack.execute(partition_key=render_id)

    assert rerun.success
    after = row(stack, render_id)
    assert (after["status"], after["stage"], after["progress"]) == (RenderStatus.COMPLETED, "completed", 100)
    assert (after["version"], after["versions"]) == (2, [1, 2])
    assert after["image_url"] != before["image_url"]
    assert set(old_objects) < set(delivered_objects(stack))  # the old URLs still serve
    for key, data in old_objects.items():
        assert delivered_objects(stack)[key] == data
    assert stack.ledger(render_id) == ledger  # free: no charge, no refund
    again = bull_job(stack.queue_name, first["job_id"])
    assert (again.returnvalue, again.progress, again.finishedOn) == (job.returnvalue, job.progress, job.finishedOn)
    events = stream(render_id)
    assert [name for name, _ in events][-2:] == ["completed", "rerendered"]
    rerendered = events[-1][1]
    assert rerendered["version"] == 2 and rerendered["result"] == after["result"]
    [posted] = inbox.received
    assert json.loads(posted.body)["version"] == 2 and json.loads(posted.body)["result"] == after["result"]


def test_an_unchanged_render_rerendered_calls_no_provider_and_writes_nothing(
    stack: InProcessStack, inbox: WebhookInbox
) -> None:
    first = deliver(stack)
    render_id, before, objects = first["render_id"], row(stack, first["render_id"]), delivered_objects(stack)
    events_before = stream(render_id)
    stack.providers = ProvidersResource(order="openai")  # would fail: it has no key

    rerun = stack.execute(partition_key=render_id)

    assert rerun.success
    raw = rerun.asset_materializations_for_node("raw_render")[0].metadata
    assert raw["reused_from_run"].value == first["run"].run_id
    assert delivered_objects(stack) == objects
    assert row(stack, render_id) == before
    assert stream(render_id) == events_before and inbox.received == []
    cdn = rerun.asset_materializations_for_node("cdn_image")[0].metadata
    assert (cdn["version"].value, cdn["new_version"].value) == (1, False)


def test_a_failed_rerender_leaves_the_render_delivered_as_it_was(
    stack: InProcessStack, inbox: WebhookInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = deliver_then_reword_modern(stack, monkeypatch)
    render_id, before, ledger = first["render_id"], row(stack, first["render_id"]), stack.ledger(first["render_id"])
    events_before = stream(render_id)
    stack.providers = ProvidersResource(order="openai")  # the provider is down (unconfigured)

    rerun = stack.execute(partition_key=render_id)

    assert not rerun.success
    assert row(stack, render_id) == before  # status, stage, progress, URLs, version: all as they were
    assert stack.ledger(render_id) == ledger
    assert stream(render_id) == events_before and inbox.received == []
    run = stack.instance.get_run_by_id(rerun.run_id)
    assert run is not None
    assert run.tags[OUTCOME_TAG] == f"re-render failed; render {render_id} stays delivered as version 1"
    with stack.database.session() as session:
        [failure] = session.query(RenderFailure).filter_by(render_id=render_id).all()
        assert (failure.attempt, failure.final, failure.stage) == (None, False, "raw_render")


def test_an_operator_run_of_a_render_never_admitted_fails_at_once(
    sqlite_url: str, queue_name: str, tmp_path: Path
) -> None:
    with in_process_stack(sqlite_url, queue_name, tmp_path, initial_credits=1) as stack:
        data = web_app_job(resolution="2048x2048", quality=90)  # costs more than 1 credit
        stack.enqueue(data)
        [refused] = stack.run_all()
        assert not refused.success

        rerun = stack.execute(partition_key=data["renderId"])

        assert not rerun.success
        [failure] = [event for event in rerun.all_events if event.is_step_failure]
        assert failure.step_key == "render_prompt"
        assert "was never admitted (insufficient credits: need" in str(failure.event_specific_data)
        assert not rerun.asset_materializations_for_node("raw_render")
        assert delivered_objects(stack) == {}
        assert stack.ledger(data["renderId"]) == []


def test_an_operator_run_waits_for_the_customers_job_to_end(stack: InProcessStack) -> None:
    data = web_app_job()
    stack.enqueue(data)
    [claimed] = stack.tick().run_requests or []  # claimed; its run not started yet

    rerun = stack.execute(partition_key=data["renderId"])

    assert not rerun.success
    [failure] = [event for event in rerun.all_events if event.is_step_failure]
    assert f"render {data['renderId']} is claimed for its customer's job" in str(failure.event_specific_data)
    assert stack.execute(claimed).success  # the customer's run goes on as if nothing happened
    assert row(stack, data["renderId"])["versions"] == [1]


def test_every_run_carries_its_customer_and_operator_runs_say_what_they_are(stack: InProcessStack) -> None:
    first = deliver(stack)
    customer = stack.instance.get_run_by_id(first["run"].run_id)
    assert customer is not None
    data = first["data"]
    expected = {
        "render/organization": data["organizationId"],
        "render/project": data["projectId"],
        "render/tier": data["subscriptionTier"],
        "render/render_id": data["renderId"],
    }
    assert {**customer.tags, **expected} == customer.tags and customer.tags["render/run_kind"] == "customer"

    rerun = stack.execute(partition_key=first["render_id"])
    operator = stack.instance.get_run_by_id(rerun.run_id)
    assert operator is not None
    assert {**operator.tags, **expected} == operator.tags
    assert operator.tags["render/run_kind"] == "operator"
    assert operator.tags["render/operator_action"] == "operator materialize: no charge, no BullMQ"


def test_qa_verdicts_are_on_the_checks_tab_too(stack: InProcessStack) -> None:
    first = deliver(stack)
    [evaluation] = first["run"].get_asset_check_evaluations()
    assert evaluation.asset_key == AssetKey("qa_verdict") and evaluation.check_name == "quality"
    assert evaluation.passed and evaluation.metadata["verdict"].value == "pass"
    assert 0 < evaluation.metadata["score"].value <= 1


def test_a_new_variant_spec_makes_only_cdn_image_stale(stack: InProcessStack) -> None:
    first = deliver(stack)
    observe_rules(stack, None)
    new_spec = [
        asset.map_asset_specs(lambda spec: spec.replace_attributes(code_version="variants-new"))
        if asset.key == AssetKey("cdn_image")
        else asset
        for asset in RENDER_ASSETS
    ]
    graph = Definitions(assets=[PROMPT_RULES, *new_spec], resources=stack.resources).resolve_asset_graph()

    [stale] = stale_renders(stack.instance, graph, [first["render_id"]])

    assert [(asset.asset, asset.causes) for asset in stale.assets] == [
        ("cdn_image", ["cdn_image has a new code version"])
    ]
    assert stale.first_stale == "cdn_image"


def local_path(url: str) -> Path:
    return Path(urlparse(url).path)


@pytest.fixture
def operator_cli(stack: InProcessStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """`render-assets` pointed at the stack's database and Dagster instance."""
    monkeypatch.setenv("DATABASE_URL", stack.database_url)
    monkeypatch.setenv("DAGSTER_HOME", stack.instance.root_directory)


def test_the_operator_lists_stale_renders_and_launches_one_backfill_over_them(
    stack: InProcessStack, operator_cli: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    modern = deliver(stack, style_words="a modern backyard with a flagstone path")
    landscape = deliver(stack)
    cursor = observe_rules(stack, None)
    template = prompt_styles.TEMPLATES["modern"]
    monkeypatch.setitem(prompt_styles.TEMPLATES, "modern", dataclasses.replace(template, quality="grainy film"))
    observe_rules(stack, cursor)

    assert cli.main(["renders", "stale", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert (listed["checked"], listed["stale"]) == (2, 1)
    assert listed["renders"] == [
        {
            "renderId": modern["render_id"],
            "firstStale": "render_prompt",
            "assets": {"render_prompt": ["prompt_rules has a new data version: style template 'modern' changed"]},
        }
    ]
    assert cli.main(["renders", "stale", "--org", "org-elsewhere", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checked"] == 0

    assert cli.main(["rerender", "--stale", "--json"]) == 0
    launched = json.loads(capsys.readouterr().out)
    backfill = stack.instance.get_backfill(launched["backfillId"])
    assert backfill is not None and launched["requested"] == 1
    targeted = backfill.asset_backfill_data.target_subset  # type: ignore[union-attr]
    assert {key.path[-1] for key in targeted.asset_keys} == {"render_prompt", "raw_render", "qa_verdict", "cdn_image"}
    assert {partition for _, partition in targeted.iterate_asset_partitions()} == {modern["render_id"]}
    assert backfill.tags == {"dagster/priority": "-10", "render/run_kind": "operator"}
    assert landscape["render_id"] not in str(targeted)


def test_rerender_refuses_renders_that_were_not_delivered(
    stack: InProcessStack, operator_cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["rerender", "render-unknown"]) == 2
    assert "not delivered renders with a partition (nothing to re-render): render-unknown" in capsys.readouterr().err
    assert cli.main(["rerender"]) == 2
    assert "give either --stale or render ids" in capsys.readouterr().err
    assert stack.instance.get_backfills() == []
