"""energy in one statement: fresh reads under the user lock, no rules_version foreign keys,
partner keys announced on change

Revision ID: 6b1d2e3f4a51
Revises: 7c2e3f4a5b62
Create Date: 2026-12-06 02:00:00

- Ingestion (activities, step days) runs as one statement that first locks the users it names,
  in id order. A statement's snapshot is taken when it starts, so rows another request committed
  while this one waited for a user's lock (a counter it created, an activity it recorded, a step
  day it inserted) are invisible to the statement's own reads. The three functions below read
  those tables again *after* the locks are held: a VOLATILE function takes a fresh snapshot for
  each query it runs (PostgreSQL, "Function Volatility Categories"), so what they return is
  exact, and nothing can change it until the statement commits (every writer of these rows holds
  the same user lock).
- The foreign keys from ``rules_version`` to ``rules_versions`` go: every ingested event wrote
  three rows naming a version (activity, ball, ledger entries), and each check was an index
  probe plus a KEY SHARE lock on one of a handful of ``rules_versions`` rows that every writer
  in the system shares. Versions are immutable and never deleted, and only the registry (which
  holds published versions only) names them, so the check could never fail.
- ``partners``: a change of key, scopes, name or status (or a deletion) is announced with
  ``NOTIFY canopy_partner_keys`` on commit, so every process drops the key it verified and
  cached (``app.partners.keys``).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "6b1d2e3f4a51"
down_revision: str | None = "7c2e3f4a5b62"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VERSIONED = ("activities", "energy_balls", "ledger_entries")


def _fk(table: str) -> str:
    return f"fk_{table}_rules_version_rules_versions"


def upgrade() -> None:
    for table in VERSIONED:
        op.drop_constraint(_fk(table), table, type_="foreignkey")
    op.execute(
        """
        CREATE FUNCTION canopy_recorded_activities(p_users uuid[], p_sources text[], p_ids text[])
        RETURNS TABLE (user_id uuid, source text, external_id text, kind text, energy_g bigint,
                       ball_id uuid, rules_version int)
        LANGUAGE sql VOLATILE AS $$
            SELECT a.user_id, a.source::text, a.external_id::text, a.kind::text, a.energy_g,
                   a.ball_id, a.rules_version
            FROM activities a
            JOIN unnest(p_users, p_sources, p_ids) AS k(u, s, i)
              ON a.user_id = k.u AND a.source = k.s AND a.external_id = k.i
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION canopy_cap_usage(
            p_users uuid[], p_kinds text[], p_periods text[], p_starts date[]
        )
        RETURNS TABLE (user_id uuid, kind text, period text, period_start date, count int,
                       grams bigint)
        LANGUAGE sql VOLATILE AS $$
            SELECT c.user_id, c.kind::text, c.period::text, c.period_start, c.count, c.grams
            FROM cap_counters c
            JOIN unnest(p_users, p_kinds, p_periods, p_starts) AS k(u, kd, p, s)
              ON c.user_id = k.u AND c.kind = k.kd AND c.period = k.p AND c.period_start = k.s
            ORDER BY 1, 2, 3, 4
            FOR NO KEY UPDATE OF c
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION canopy_step_days(p_users uuid[], p_before date[], p_day date)
        RETURNS TABLE (user_id uuid, day date, steps bigint, source text,
                       updated_at timestamptz, minted_at timestamptz, energy_g bigint,
                       ball_id uuid, rules_version int)
        LANGUAGE sql VOLATILE AS $$
            SELECT s.user_id, s.day, s.steps, s.source::text, s.updated_at, s.minted_at,
                   s.energy_g, s.ball_id, s.rules_version
            FROM step_days s
            JOIN unnest(p_users, p_before) AS k(u, before) ON s.user_id = k.u
            WHERE (s.minted_at IS NULL AND s.day < k.before) OR s.day = p_day
            ORDER BY 1, 2
            FOR NO KEY UPDATE OF s
        $$
        """
    )
    # pg_notify is delivered when the changing transaction commits, never for a rollback
    op.execute(
        """
        CREATE FUNCTION canopy_notify_partner_key() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('canopy_partner_keys', OLD.api_key_hash);
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER partners_key_changed
        AFTER UPDATE OF api_key_hash, scopes, name, disabled_at OR DELETE ON partners
        FOR EACH ROW EXECUTE FUNCTION canopy_notify_partner_key()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER partners_key_changed ON partners")
    op.execute("DROP FUNCTION canopy_notify_partner_key()")
    op.execute("DROP FUNCTION canopy_step_days(uuid[], date[], date)")
    op.execute("DROP FUNCTION canopy_cap_usage(uuid[], text[], text[], date[])")
    op.execute("DROP FUNCTION canopy_recorded_activities(uuid[], text[], text[])")
    for table in VERSIONED:
        op.create_foreign_key(_fk(table), table, "rules_versions", ["rules_version"], ["version"])
