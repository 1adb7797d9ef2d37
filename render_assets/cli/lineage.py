"""`render-assets renders stale` and `render-assets rerender`: the operator's side of lineage.

Both read the Dagster instance of `DAGSTER_HOME` (the daemon's) and the code location as it is
installed here: staleness is Dagster's own (code versions, the prompt rules' data versions), and a
re-render is one Dagster backfill, which the daemon runs like any other (visible in the UI). Only
delivered renders are re-rendered; a re-render never charges, refunds or touches BullMQ.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from render_assets.persistence.database import Database
from render_assets.services.backends import DatabaseSettings, database_options

if TYPE_CHECKING:
    from dagster import DagsterInstance
    from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph

BACKFILL_PRIORITY = "-10"  # customers' runs start first (see sensors/render_jobs.py)
WAIT_POLL_S = 2.0


class LineageError(Exception):
    """A problem the operator can act on, said in one line."""


Command = Callable[[argparse.Namespace], int]


def guarded(command: Command) -> Command:
    """The command, with a `LineageError` said in one line and exit status 2."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except LineageError as error:
            print(f"render-assets: {error}", file=sys.stderr)
            return 2

    return run


def _instance() -> DagsterInstance:
    from dagster import DagsterInstance

    try:
        return DagsterInstance.get()
    except Exception as error:  # DAGSTER_HOME unset, or its dagster.yaml unreadable
        raise LineageError(f"cannot open the Dagster instance (DAGSTER_HOME): {error}") from None


def _database() -> Database:
    return DatabaseSettings(**database_options()).open()


def _asset_graph() -> BaseAssetGraph:
    from render_assets.orchestration.definitions import defs

    return defs.resolve_asset_graph()


def delivered_renders(database: Database, render_ids: Sequence[str] | None, organization: str | None) -> list[str]:
    """The delivered renders among `render_ids` (all when None), of one organization if given."""
    from sqlalchemy import select

    from render_assets.persistence.models import Render, RenderStatus

    query = select(Render.id).where(Render.status == RenderStatus.COMPLETED)
    if organization:
        query = query.where(Render.organization_id == organization)
    if render_ids is not None:
        query = query.where(Render.id.in_(list(render_ids)))
    with database.session() as session:
        return sorted(session.execute(query).scalars())


def _partitioned(instance: DagsterInstance, render_ids: list[str]) -> list[str]:
    from render_assets.orchestration.partitions import render_partitions

    assert render_partitions.name is not None
    known = set(instance.get_dynamic_partitions(render_partitions.name))
    return [render_id for render_id in render_ids if render_id in known]


@guarded
def cmd_stale(args: argparse.Namespace) -> int:
    from render_assets.orchestration.lineage import stale_renders

    instance, database = _instance(), _database()
    checked = _partitioned(instance, delivered_renders(database, None, args.org))
    stale = stale_renders(instance, _asset_graph(), checked)
    if args.json:
        found = [
            {
                "renderId": render.render_id,
                "firstStale": render.first_stale,
                "assets": {asset.asset: asset.causes for asset in render.assets},
            }
            for render in stale
        ]
        print(json.dumps({"checked": len(checked), "stale": len(found), "renders": found}, indent=2))
    else:
        for render in stale:
            causes = "; ".join(cause for asset in render.assets for cause in asset.causes)
            print(f"{render.render_id}: from {render.first_stale}: {causes}")
        print(f"{len(stale)} of {len(checked)} delivered render(s) stale")
    return 0


@dataclass(frozen=True)
class Launched:
    backfill_id: str
    render_ids: list[str]
    started_at: float


def launch_rerender(
    instance: DagsterInstance, asset_graph: BaseAssetGraph, first_assets: dict[str, str], *, title: str
) -> Launched:
    """One backfill over the renders, each from its first asset to cdn_image (`first_assets`:
    render id -> the most upstream asset to run)."""
    from dagster import AssetKey
    from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
    from dagster._core.definitions.events import AssetKeyPartitionKey
    from dagster._core.execution.backfill import PartitionBackfill

    from render_assets.orchestration.lineage import RENDER_ASSET_NAMES
    from render_assets.orchestration.run_identity import RUN_KIND_TAG, RunKind

    wanted = {
        AssetKeyPartitionKey(AssetKey(name), render_id)
        for render_id, first in first_assets.items()
        for name in RENDER_ASSET_NAMES[RENDER_ASSET_NAMES.index(first) :]
    }
    backfill_id = uuid.uuid4().hex[:8]
    started = time.time()
    backfill = PartitionBackfill.from_asset_graph_subset(
        backfill_id=backfill_id,
        backfill_timestamp=started,
        tags={"dagster/priority": BACKFILL_PRIORITY, RUN_KIND_TAG: RunKind.OPERATOR.value},
        dynamic_partitions_store=instance,
        asset_graph_subset=AssetGraphSubset.from_asset_partition_set(wanted, asset_graph),
        title=title,
        description="Operator re-render (render-assets rerender): no charge, no BullMQ",
        run_config=None,
    )
    instance.add_backfill(backfill)
    return Launched(backfill_id, sorted(first_assets), started)


def wait_for(instance: DagsterInstance, launched: Launched, database: Database, timeout_s: float) -> dict[str, Any]:
    """Wait for the backfill to end, then what it did to each render."""
    from dagster import DagsterRunStatus, RunsFilter
    from dagster._core.execution.backfill import BULK_ACTION_TERMINAL_STATUSES

    deadline = time.monotonic() + timeout_s
    while True:
        backfill = instance.get_backfill(launched.backfill_id)
        status = backfill.status if backfill is not None else None
        if status in BULK_ACTION_TERMINAL_STATUSES:
            break
        if time.monotonic() > deadline:
            raise LineageError(f"backfill {launched.backfill_id} did not end within {timeout_s:.0f} s (still {status})")
        time.sleep(WAIT_POLL_S)
    runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": launched.backfill_id}))
    failed = {run.tags.get("dagster/partition") for run in runs if run.status == DagsterRunStatus.FAILURE}
    versions = _new_versions(database, {run.run_id for run in runs})
    renders: list[dict[str, Any]] = []
    for render_id in launched.render_ids:
        if render_id in failed:
            renders.append({"renderId": render_id, "outcome": "failed"})
        elif render_id in versions:
            renders.append({"renderId": render_id, "outcome": "rerendered", "version": versions[render_id]})
        else:
            renders.append({"renderId": render_id, "outcome": "unchanged"})
    count = {outcome: sum(item["outcome"] == outcome for item in renders) for outcome in ("rerendered", "unchanged")}
    return {
        "backfillId": launched.backfill_id,
        "status": status.value if status is not None else None,
        "requested": len(launched.render_ids),
        "rerendered": count["rerendered"],
        "unchanged": count["unchanged"],
        "failed": len([item for item in renders if item["outcome"] == "failed"]),
        "seconds": round(time.time() - launched.started_at, 1),
        "renders": renders,
    }


def _new_versions(database: Database, run_ids: set[str]) -> dict[str, int]:
    from sqlalchemy import select

    from render_assets.persistence.models import RenderVersion

    if not run_ids:
        return {}
    with database.session() as session:
        rows = session.execute(
            select(RenderVersion.render_id, RenderVersion.version).where(RenderVersion.run_id.in_(run_ids))
        )
        return {render_id: version for render_id, version in rows}


@guarded
def cmd_rerender(args: argparse.Namespace) -> int:
    from render_assets.orchestration.lineage import RENDER_ASSET_NAMES, stale_renders

    if bool(args.stale) == bool(args.render_ids):
        raise LineageError("give either --stale or render ids")
    instance, database = _instance(), _database()
    graph = _asset_graph()
    if args.stale:
        candidates = _partitioned(instance, delivered_renders(database, None, args.org))
        first_assets = {render.render_id: render.first_stale for render in stale_renders(instance, graph, candidates)}
    else:
        delivered = set(_partitioned(instance, delivered_renders(database, args.render_ids, args.org)))
        missing = [render_id for render_id in args.render_ids if render_id not in delivered]
        if missing:
            raise LineageError(f"not delivered renders with a partition (nothing to re-render): {', '.join(missing)}")
        first_assets = {render_id: RENDER_ASSET_NAMES[0] for render_id in args.render_ids}
    if not first_assets:
        summary: dict[str, Any] = {"backfillId": None, "requested": 0, "rerendered": 0, "failed": 0}
        print(json.dumps(summary) if args.json else "nothing to re-render")
        return 0
    title = f"re-render {'stale renders' if args.stale else 'renders'}" + (f" of {args.org}" if args.org else "")
    launched = launch_rerender(instance, graph, first_assets, title=title)
    if not args.wait:
        summary = {"backfillId": launched.backfill_id, "status": "requested", "requested": len(launched.render_ids)}
        print(json.dumps(summary) if args.json else f"backfill {launched.backfill_id}: {len(first_assets)} render(s)")
        return 0
    summary = wait_for(instance, launched, database, args.timeout)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"backfill {summary['backfillId']} {summary['status']}: {summary['requested']} requested, "
            f"{summary['rerendered']} re-rendered, {summary['unchanged']} unchanged, {summary['failed']} failed"
        )
    return 1 if summary["failed"] else 0
