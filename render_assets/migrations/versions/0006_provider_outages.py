"""Provider outages: a render waiting for an image provider records when its job is due again.

Revision ID: 0006_provider_outages
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_provider_outages"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("renders", sa.Column("waiting_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("renders", "waiting_until")
