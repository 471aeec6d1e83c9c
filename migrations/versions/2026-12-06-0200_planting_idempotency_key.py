"""plantings remember the Idempotency-Key that made them (one round trip per planting)

Revision ID: 8d3f4a5b6c73
Revises: 9e4a5b6c7d84
Create Date: 2026-12-06 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8d3f4a5b6c73"
down_revision: str | None = "9e4a5b6c7d84"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = sa.text("idempotency_key IS NOT NULL")


def upgrade() -> None:
    op.add_column("plantings", sa.Column("idempotency_key", sa.String(length=255), nullable=True))
    op.create_index(
        "ix_plantings_user_id_idempotency_key",
        "plantings",
        ["user_id", "idempotency_key"],
        unique=True,
        postgresql_where=WHERE,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_plantings_user_id_idempotency_key", table_name="plantings", postgresql_where=WHERE
    )
    op.drop_column("plantings", "idempotency_key")
