"""Observability: failed attempts with their class, step timings, and failure-pattern alerts.

Revision ID: 0004_observability
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_observability"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "render_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("render_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("failure_class", sa.String(length=32), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("qa_score", sa.Float(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "stage", name="uq_render_failures_run_stage"),
    )
    op.create_index("ix_render_failures_render_id", "render_failures", ["render_id"])
    op.create_index("ix_render_failures_occurred_at", "render_failures", ["occurred_at"])
    op.create_table(
        "render_stage_timings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("render_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("qa_score", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_render_stage_timings_render_id", "render_stage_timings", ["render_id"])
    op.create_index("ix_render_stage_timings_finished_at", "render_stage_timings", ["finished_at"])
    op.create_table(
        "failure_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pattern", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("details", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_failure_alerts_one_firing",
        "failure_alerts",
        ["pattern"],
        unique=True,
        postgresql_where=sa.text("state = 'firing'"),
        sqlite_where=sa.text("state = 'firing'"),
    )


def downgrade() -> None:
    op.drop_index("uq_failure_alerts_one_firing", table_name="failure_alerts")
    op.drop_table("failure_alerts")
    op.drop_index("ix_render_stage_timings_finished_at", table_name="render_stage_timings")
    op.drop_index("ix_render_stage_timings_render_id", table_name="render_stage_timings")
    op.drop_table("render_stage_timings")
    op.drop_index("ix_render_failures_occurred_at", table_name="render_failures")
    op.drop_index("ix_render_failures_render_id", table_name="render_failures")
    op.drop_table("render_failures")
