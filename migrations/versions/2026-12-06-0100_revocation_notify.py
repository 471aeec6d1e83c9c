"""logins revoked: NOTIFY on commit, and an index for the processes' revocation poll

Revision ID: 5a0c1d2e3f40
Revises: 3d9b5e7f2a41
Create Date: 2026-12-06 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5a0c1d2e3f40"
down_revision: str | None = "3d9b5e7f2a41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = sa.text("revoked_at IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_auth_sessions_revoked_at",
        "auth_sessions",
        ["revoked_at"],
        unique=False,
        postgresql_where=WHERE,
    )
    # pg_notify is delivered when the revoking transaction commits, never for a rollback
    op.execute(
        """
        CREATE FUNCTION canopy_notify_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('canopy_revoked', NEW.id::text);
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER auth_sessions_revoked AFTER UPDATE OF revoked_at ON auth_sessions
        FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
        EXECUTE FUNCTION canopy_notify_revoked()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER auth_sessions_revoked ON auth_sessions")
    op.execute("DROP FUNCTION canopy_notify_revoked()")
    op.drop_index(
        "ix_auth_sessions_revoked_at", table_name="auth_sessions", postgresql_where=WHERE
    )
