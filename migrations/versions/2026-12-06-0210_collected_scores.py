"""collected_scores: each user's energy collected in the boards' current day and week

Kept by the collect statements so the friends list and the Redis boards get a user's period
scores without summing ledger entries; restarted from the ledger whenever a period changes.

Revision ID: 7c2e3f4a5b62
Revises: 8d3f4a5b6c73
Create Date: 2026-12-06 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c2e3f4a5b62"
down_revision: str | None = "8d3f4a5b6c73"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # no backfill: a missing row reads as "sum the ledger" (see app/game/leaderboards/scores.py)
    op.create_table(
        "collected_scores",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("day_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day_g", sa.BigInteger(), nullable=False),
        sa.Column("week_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("week_g", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_collected_scores")),
    )


def downgrade() -> None:
    op.drop_table("collected_scores")
