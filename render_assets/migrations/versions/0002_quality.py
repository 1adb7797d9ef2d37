"""Quality: perceptual hashes of renders (banded for duplicate lookups) and the manual review queue.

Revision ID: 0002_quality
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_quality"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "perceptual_hashes",
        sa.Column("render_id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.BigInteger(), nullable=False),
        sa.Column("band_0", sa.Integer(), nullable=False),
        sa.Column("band_1", sa.Integer(), nullable=False),
        sa.Column("band_2", sa.Integer(), nullable=False),
        sa.Column("band_3", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("render_id"),
    )
    for band in range(4):
        op.create_index(
            f"ix_perceptual_hashes_org_band_{band}", "perceptual_hashes", ["organization_id", f"band_{band}"]
        )
    op.create_table(
        "quality_reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("render_id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", JSON, nullable=False),
        sa.Column("measures", JSON, nullable=False),
        sa.Column("image_key", sa.Text(), nullable=False),
        sa.Column("image_url", sa.Text(), nullable=False),
        sa.Column("prompt_hash", sa.String(length=64), nullable=False),
        sa.Column("customer_attempt", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("render_id"),
    )
    op.create_index("ix_quality_reviews_organization_id", "quality_reviews", ["organization_id"])
    op.create_index("ix_quality_reviews_status", "quality_reviews", ["status"])


def downgrade() -> None:
    op.drop_index("ix_quality_reviews_status", table_name="quality_reviews")
    op.drop_index("ix_quality_reviews_organization_id", table_name="quality_reviews")
    op.drop_table("quality_reviews")
    for band in range(4):
        op.drop_index(f"ix_perceptual_hashes_org_band_{band}", table_name="perceptual_hashes")
    op.drop_table("perceptual_hashes")
