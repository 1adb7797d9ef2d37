"""Who a Dagster run is for: one reading of its tags, for every Dagster-facing reader.

A **customer run** is the one `render_job_sensor` requested for a BullMQ claim: it carries the
claim's run key (`dagster/run_key`) and is neither a re-execution nor part of a backfill. Every
other run of the render assets is an **operator run**: a backfill (`render-assets rerender`
launches one), the UI's "Materialize", or a re-execution from the UI, which copies the customer
run's tags (run key and sensor name included), so its parent-run tag is what tells it apart.
Operator runs never charge, refund or touch BullMQ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from dagster import DagsterInstance, DagsterRun

from render_assets.domain.run_keys import RunKey

PARTITION_TAG = "dagster/partition"
RUN_KEY_TAG = "dagster/run_key"
BACKFILL_TAG = "dagster/backfill"
PARENT_RUN_TAG = "dagster/parent_run_id"

# The project's own tags, on every run of a render (the Runs page filters by them).
RENDER_TAG = "render/render_id"
BULL_JOB_TAG = "render/bull_job_id"
ORGANIZATION_TAG = "render/organization"
PROJECT_TAG = "render/project"
TIER_TAG = "render/tier"
RUN_KIND_TAG = "render/run_kind"  # customer | operator
OPERATOR_ACTION_TAG = "render/operator_action"  # what launched an operator run, in words
OUTCOME_TAG = "render/outcome"  # set by the failure hook of an operator run: what the render kept


class RunKind(StrEnum):
    CUSTOMER = "customer"
    OPERATOR = "operator"


@dataclass(frozen=True)
class RunIdentity:
    render_id: str | None  # the run's partition; None for a run that is not of one render
    kind: RunKind
    claim_run_key: str | None  # the BullMQ claim's run key, for customer runs only
    operator_action: str | None = None  # "backfill <id>", "re-execution of run <id>", "materialize"

    @property
    def is_operator_run(self) -> bool:
        return self.kind is RunKind.OPERATOR

    @property
    def attempt(self) -> int | None:
        """The 1-based BullMQ attempt of a customer run (from its run key)."""
        key = RunKey.parse(self.claim_run_key) if self.claim_run_key is not None else None
        return key.attempt if key is not None else None

    @classmethod
    def of_tags(cls, tags: Mapping[str, str]) -> RunIdentity:
        render_id = tags.get(PARTITION_TAG)
        run_key = tags.get(RUN_KEY_TAG)
        if PARENT_RUN_TAG in tags:
            action = f"re-execution of run {tags[PARENT_RUN_TAG]}"
        elif BACKFILL_TAG in tags:
            action = f"backfill {tags[BACKFILL_TAG]}"
        elif run_key is None:
            action = "materialize"
        else:
            return cls(render_id, RunKind.CUSTOMER, run_key)
        return cls(render_id, RunKind.OPERATOR, None, action)

    @classmethod
    def of(cls, run: DagsterRun) -> RunIdentity:
        return cls.of_tags(run.tags)

    def tags(self, *, organization_id: str, project_id: str, tier: str) -> dict[str, str]:
        """The tags a person filters runs by; an operator run also says what launched it."""
        tags = {
            RUN_KIND_TAG: self.kind.value,
            ORGANIZATION_TAG: organization_id,
            PROJECT_TAG: project_id,
            TIER_TAG: tier,
        }
        if self.render_id is not None:
            tags[RENDER_TAG] = self.render_id
        if self.operator_action is not None:
            tags[OPERATOR_ACTION_TAG] = f"operator {self.operator_action}: no charge, no BullMQ"
        return tags


def label_run(instance: DagsterInstance, run: DagsterRun, tags: Mapping[str, str]) -> None:
    """Add the render's tags to a run that lacks them (operator runs, which no sensor tagged).

    A re-execution inherits the customer run's `render/run_kind`; the new value replaces it."""
    missing = {key: value for key, value in tags.items() if run.tags.get(key) != value}
    if missing:
        instance.add_run_tags(run.run_id, missing)
