"""Cancellations: requests kept as tombstones, when a render's image was made, and whether a
cancelled render's charge stands.

Revision ID: 0007_cancellations
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_cancellations"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("renders", sa.Column("generated_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("renders", sa.Column("cancel_charged", sa.Boolean(), nullable=True))
    op.create_table(
        "render_cancellations",
        sa.Column("render_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleaned_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("render_id"),
    )
    op.create_index("ix_render_cancellations_requested_at", "render_cancellations", ["requested_at"])


def downgrade() -> None:
    op.drop_table("render_cancellations")
    op.drop_column("renders", "cancel_charged")
    op.drop_column("renders", "generated_at")
