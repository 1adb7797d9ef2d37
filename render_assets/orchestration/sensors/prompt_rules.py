"""The prompt-rules sensor: after the rules change (a new code location with another template,
preset, catalogue entry or builder), observe `prompt_rules` anew for the renders whose prompt it
changes, so Dagster shows exactly those as stale, with what changed. Large partition sets are
scanned a chunk per tick."""

import json
import logging

from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor
from pydantic import ValidationError

from render_assets.domain.payload import RenderJob
from render_assets.domain.prompt import PromptRules, prompt_rules, rules_digest
from render_assets.orchestration import lineage
from render_assets.orchestration.partitions import render_partitions
from render_assets.orchestration.resources import DatabaseResource
from render_assets.persistence import renders

log = logging.getLogger(__name__)

RULES_INTERVAL_S = 30
SCAN_CHUNK = 2_000  # renders a tick reads and rebuilds (about 1.3 ms each), well inside a tick's time


@sensor(
    minimum_interval_seconds=RULES_INTERVAL_S,
    default_status=DefaultSensorStatus.RUNNING,
    description="Observes prompt_rules anew for the renders whose prompt a change of the prompt rules alters.",
)
def prompt_rules_sensor(context: SensorEvaluationContext, database: DatabaseResource) -> SensorResult | SkipReason:
    current = rules_digest()
    state = json.loads(context.cursor) if context.cursor else {}
    if state.get("rules") == current:
        return SkipReason("the prompt rules are unchanged")
    after = state.get("after") if state.get("scanning") == current else None
    assert render_partitions.name is not None
    keys = sorted(
        key for key in context.instance.get_dynamic_partitions(render_partitions.name) if after is None or key > after
    )
    chunk = keys[:SCAN_CHUNK]
    with database.get().session() as session:
        designs = renders.payloads(session, chunk)
    rules = {render_id: rules for render_id, payload in designs.items() if (rules := _rules(render_id, payload))}
    observations = lineage.changed_rules(context.instance, rules)
    finished = len(keys) <= SCAN_CHUNK
    cursor = {"rules": current} if finished else {**state, "scanning": current, "after": chunk[-1]}
    summary = f"{len(observations)} of {len(rules)} renders' prompts changed" + ("" if finished else "; scan goes on")
    for observation in observations[:20]:
        context.log.info(f"{observation.partition}: {observation.metadata[lineage.CHANGED_KEY].value}")
    return SensorResult(asset_events=observations, cursor=json.dumps(cursor), skip_reason=summary)


def _rules(render_id: str, payload: dict[str, object]) -> PromptRules | None:
    try:
        return prompt_rules(RenderJob.model_validate(payload))
    except ValidationError:  # a payload the current model no longer reads: nothing to compare
        log.warning("render %s: its payload no longer validates; its prompt rules are not observed", render_id)
        return None
