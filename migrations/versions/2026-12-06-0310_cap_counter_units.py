"""cap counters sum the day's units, so a per-unit kind's day is bounded in total, not per event

Revision ID: 9e4a5b6c7d82
Revises: 8d3f4a5b6c71
Create Date: 2026-12-07 02:10:00

``canopy_cap_usage`` (migration 6b1d2e3f4a51) returns the units too: it is dropped and created
again, as a function's result type cannot change in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9e4a5b6c7d82"
down_revision: str | None = "8d3f4a5b6c71"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ARGS = "p_users uuid[], p_kinds text[], p_periods text[], p_starts date[]"


def _usage(with_units: bool) -> None:
    units_out = ", units numeric" if with_units else ""
    units_in = ", c.units" if with_units else ""
    op.execute("DROP FUNCTION canopy_cap_usage(uuid[], text[], text[], date[])")
    op.execute(
        f"""
        CREATE FUNCTION canopy_cap_usage({_ARGS})
        RETURNS TABLE (user_id uuid, kind text, period text, period_start date, count int,
                       grams bigint{units_out})
        LANGUAGE sql VOLATILE AS $$
            SELECT c.user_id, c.kind::text, c.period::text, c.period_start, c.count,
                   c.grams{units_in}
            FROM cap_counters c
            JOIN unnest(p_users, p_kinds, p_periods, p_starts) AS k(u, kd, p, s)
              ON c.user_id = k.u AND c.kind = k.kd AND c.period = k.p AND c.period_start = k.s
            ORDER BY 1, 2, 3, 4
            FOR NO KEY UPDATE OF c
        $$
        """  # noqa: S608 (constant parts)
    )


def upgrade() -> None:
    op.add_column(
        "cap_counters",
        sa.Column("units", sa.Numeric(18, 6), nullable=False, server_default="0"),
    )
    _usage(with_units=True)


def downgrade() -> None:
    _usage(with_units=False)
    op.drop_column("cap_counters", "units")
