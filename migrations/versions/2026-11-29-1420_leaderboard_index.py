"""index for a user's collected energy in a period (leaderboard refresh)

Revision ID: 3d9b5e7f2a41
Revises: 080c694cb29d
Create Date: 2026-11-29 14:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3d9b5e7f2a41"
down_revision: str | None = "080c694cb29d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = sa.text("account = 'user' AND reason IN ('collect', 'steal')")


def upgrade() -> None:
    op.create_index(
        "ix_ledger_entries_user_collected_at",
        "ledger_entries",
        ["user_id", "at"],
        unique=False,
        postgresql_where=WHERE,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_ledger_entries_user_collected_at", table_name="ledger_entries", postgresql_where=WHERE
    )
