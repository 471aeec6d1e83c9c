"""idempotency records name the person whose data they hold

Revision ID: 7c1e2f4a9b10
Revises: 05a4a85a4a96
Create Date: 2026-11-29 13:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c1e2f4a9b10"
down_revision: str | None = "05a4a85a4a96"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("user_id", sa.Uuid(), nullable=True))
    op.create_index(
        op.f("ix_idempotency_keys_user_id"), "idempotency_keys", ["user_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_keys_user_id"), table_name="idempotency_keys")
    op.drop_column("idempotency_keys", "user_id")
