"""a change of region applies from the user's next local day: the region before it is kept for
the events of earlier days

Revision ID: a05b6c7d8e93
Revises: 9e4a5b6c7d82
Create Date: 2026-12-07 02:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a05b6c7d8e93"
down_revision: str | None = "9e4a5b6c7d82"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("region_previous", sa.String(length=64), nullable=True))
    op.add_column("users", sa.Column("region_from", sa.Date(), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "region_from")
    op.drop_column("users", "region_previous")
