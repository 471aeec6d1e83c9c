"""partners name the activity kinds they may report; a change of kinds (or webhook URL) is
announced to the processes holding the partner's key

Revision ID: 8d3f4a5b6c71
Revises: 4b7e1c2d3f95
Create Date: 2026-12-07 02:00:00

``kinds`` NULL means every kind whose rules ``sources`` include ``"partner"`` (what every
partner could report before this column existed).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision: str = "8d3f4a5b6c71"
down_revision: str | None = "4b7e1c2d3f95"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _trigger(columns: str) -> None:
    op.execute("DROP TRIGGER partners_key_changed ON partners")
    op.execute(
        f"""
        CREATE TRIGGER partners_key_changed
        AFTER UPDATE OF {columns} OR DELETE ON partners
        FOR EACH ROW EXECUTE FUNCTION canopy_notify_partner_key()
        """
    )


def upgrade() -> None:
    op.add_column("partners", sa.Column("kinds", ARRAY(sa.String(length=64)), nullable=True))
    _trigger("api_key_hash, scopes, name, disabled_at, kinds")


def downgrade() -> None:
    _trigger("api_key_hash, scopes, name, disabled_at")
    op.drop_column("partners", "kinds")
