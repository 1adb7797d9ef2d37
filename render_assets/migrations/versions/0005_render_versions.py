"""Render versions: every delivered version of a render, and the webhook outbox that tells the
web app about re-renders. Delivered renders become version 1.

Revision ID: 0005_render_versions
Revises: 0003_settlement (it reads renders.delivered_via)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_render_versions"
down_revision: str | Sequence[str] | None = "0003_settlement"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("renders", sa.Column("current_version", sa.Integer(), nullable=True))
    op.create_table(
        "render_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("render_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("result", JSON, nullable=False),
        sa.Column("image_url", sa.Text(), nullable=False),
        sa.Column("thumbnail_url", sa.Text(), nullable=False),
        sa.Column("image_key", sa.Text(), nullable=True),
        sa.Column("prompt_hash", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("code_versions", JSON, nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("delivered_via", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("render_id", "version", name="uq_render_versions_render_version"),
    )
    op.create_index("ix_render_versions_render_id", "render_versions", ["render_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(length=160), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("render_id", sa.String(length=64), nullable=False),
        sa.Column("body", JSON, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index("ix_webhook_deliveries_render_id", "webhook_deliveries", ["render_id"])
    op.create_index("ix_webhook_deliveries_next_attempt_at", "webhook_deliveries", ["next_attempt_at"])
    # What was delivered before versions were kept is version 1 of its render.
    op.execute(
        """
        INSERT INTO render_versions
            (render_id, version, result, image_url, thumbnail_url, prompt_hash, delivered_via, created_at)
        SELECT id, 1, result, image_url, thumbnail_url, prompt_hash, COALESCE(delivered_via, 'bullmq'),
               COALESCE(completed_at, updated_at, created_at)
        FROM renders
        WHERE status = 'completed' AND result IS NOT NULL AND image_url IS NOT NULL
          AND thumbnail_url IS NOT NULL AND prompt_hash IS NOT NULL
        """
    )
    op.execute(
        "UPDATE renders SET current_version = 1 WHERE id IN (SELECT render_id FROM render_versions WHERE version = 1)"
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("render_versions")
    op.drop_column("renders", "current_version")
