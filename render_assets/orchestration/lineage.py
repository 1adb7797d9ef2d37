"""Dagster's lineage of a render: the prompt rules as an observed source, and the stale renders
Dagster's own staleness finds (docs/architecture.md, "Lineage and re-renders").

Each render partition has a `prompt_rules` observation whose data version is what the current
prompt rules make of its design (`domain.prompt.prompt_rules`). `render_prompt` records the
version it was built from, so a template, preset or catalogue change that alters one render's
prompt makes exactly that render stale. Observations are written when a render is claimed and,
after the rules change, by `prompt_rules_sensor`; their metadata names the rules' parts, so a
cause can say what changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dagster import (
    AssetKey,
    AssetObservation,
    AssetRecordsFilter,
    AssetSpec,
    DagsterInstance,
    DataVersion,
    EventLogRecord,
)
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.data_version import (
    DATA_VERSION_TAG,
    CachingStaleStatusResolver,
    DataProvenance,
    StaleStatus,
    extract_data_provenance_from_entry,
    extract_data_version_from_entry,
)
from dagster._time import get_current_datetime

from render_assets.domain.prompt import PromptRules, rules_change
from render_assets.orchestration.partitions import render_partitions

PROMPT_RULES = AssetSpec(
    key="prompt_rules",
    partitions_def=render_partitions,
    group_name="render",
    kinds={"python"},
    description=(
        "The prompt rules (style templates, environment phrases, quality presets, plant catalogue, "
        "builder) as they apply to each render. Its data version changes exactly when the prompt "
        "those rules build for the render would; the render's render_prompt is then stale. "
        "Observed when a render is claimed and by prompt_rules_sensor when the rules change."
    ),
)
RENDER_ASSET_NAMES = ("render_prompt", "raw_render", "qa_verdict", "cdn_image")
CHANGED_KEY = "changed"


def rules_observation(render_id: str, rules: PromptRules, *, changed: str) -> AssetObservation:
    return AssetObservation(
        asset_key=PROMPT_RULES.key,
        partition=render_id,
        tags={DATA_VERSION_TAG: rules.version},
        metadata={**rules.parts, CHANGED_KEY: changed},
    )


@dataclass(frozen=True)
class ObservedRules:
    version: str
    parts: dict[str, str]
    changed: str  # what changed since the observation before it, in words


def observed_rules(instance: DagsterInstance, render_ids: Sequence[str]) -> dict[str, ObservedRules]:
    """The latest `prompt_rules` observation of each render that has one, in a few queries."""
    found: dict[str, ObservedRules] = {}
    wanted = set(render_ids)
    cursor = None
    while wanted - found.keys():
        page = instance.fetch_observations(
            AssetRecordsFilter(asset_key=PROMPT_RULES.key, asset_partitions=sorted(wanted - found.keys())),
            limit=1000,
            cursor=cursor,
        )
        for record in page.records:
            partition = record.partition_key
            if partition is None or partition in found:
                continue
            version = extract_data_version_from_entry(record.event_log_entry)
            observation = record.asset_observation
            metadata = observation.metadata if observation is not None else {}
            parts = {key: str(value.value) for key, value in metadata.items() if key != CHANGED_KEY}
            changed = metadata.get(CHANGED_KEY)
            found[partition] = ObservedRules(
                version.value if version else "", parts, str(changed.value) if changed else "the prompt rules changed"
            )
        if not page.has_more:
            break
        cursor = page.cursor
    return found


def changed_rules(instance: DagsterInstance, current: Mapping[str, PromptRules]) -> list[AssetObservation]:
    """Observations for the renders whose rules now build another prompt than last observed."""
    observed = observed_rules(instance, list(current))
    changes = []
    for render_id, rules in sorted(current.items()):
        before = observed.get(render_id)
        if before is not None and before.version == rules.version:
            continue
        changed = rules_change(before.parts, rules.parts) if before is not None else "first observation"
        changes.append(rules_observation(render_id, rules, changed=changed))
    return changes


def latest_materialization(instance: DagsterInstance, asset: str, render_id: str) -> EventLogRecord | None:
    return instance.get_latest_data_version_record(AssetKey(asset), False, render_id)


def materialization_by_id(instance: DagsterInstance, asset: str, storage_id: int | None) -> EventLogRecord | None:
    if storage_id is None:
        return None
    found = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(asset), storage_ids=[storage_id]), 1)
    return found.records[0] if found.records else None


def provenance_of(record: EventLogRecord | None) -> DataProvenance | None:
    return extract_data_provenance_from_entry(record.event_log_entry) if record is not None else None


def data_version_of(record: EventLogRecord | None) -> DataVersion | None:
    return extract_data_version_from_entry(record.event_log_entry) if record is not None else None


@dataclass(frozen=True)
class StaleAsset:
    asset: str
    causes: list[str]  # Dagster's root causes, in words


@dataclass(frozen=True)
class StaleRender:
    render_id: str
    assets: list[StaleAsset] = field(default_factory=list)

    @property
    def first_stale(self) -> str:
        """The most upstream stale asset: a re-render runs it and everything below it."""
        return min((stale.asset for stale in self.assets), key=RENDER_ASSET_NAMES.index)


def stale_renders(
    instance: DagsterInstance, asset_graph: BaseAssetGraph, render_ids: Iterable[str]
) -> list[StaleRender]:
    """The renders Dagster reports as stale, with its root causes, each said in words (a prompt
    rules cause also says which rules changed)."""
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=asset_graph,
    )
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=asset_graph, loading_context=view)
    ids = list(render_ids)
    rules = observed_rules(instance, ids)
    stale = []
    for render_id in ids:
        assets = []
        for name in RENDER_ASSET_NAMES:
            key = AssetKey(name)
            if resolver.get_status(key, render_id) != StaleStatus.STALE:
                continue
            causes = [
                _cause_in_words(cause.key.asset_key, cause.reason, rules.get(render_id))
                for cause in resolver.get_stale_root_causes(key, render_id)
            ]
            assets.append(StaleAsset(name, causes))
        if assets:
            stale.append(StaleRender(render_id, assets))
    return stale


def _cause_in_words(asset: AssetKey, reason: str, rules: ObservedRules | None) -> str:
    name = asset.to_user_string()
    if asset == PROMPT_RULES.key and rules is not None:
        return f"{name} {reason}: {rules.changed}"
    return f"{name} {reason}"
