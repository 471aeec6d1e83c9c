"""a take's ledger entries name the ball taken from, not the owner's activity (whose ref carries
the reporting partner's id and its event id, which friends must not learn)

Revision ID: b16c7d8e9fa4
Revises: a05b6c7d8e93
Create Date: 2026-12-07 02:30:00

The downgrade keeps the scrubbed refs: the partner and event ids are not brought back to friends.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b16c7d8e9fa4"
down_revision: str | None = "a05b6c7d8e93"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE ledger_entries SET ref = 'ball:' || CAST(ball_id AS text) "
        "WHERE reason = 'steal' AND ball_id IS NOT NULL AND ref IS DISTINCT FROM "
        "'ball:' || CAST(ball_id AS text)"
    )


def downgrade() -> None:
    pass
