"""The own forest's statements: the page (balls with their collections, props, trees, balance)
and the collect (with the collector's leaderboard scores), each ONE statement.

The ball parts are energy's (:mod:`app.energy.forest`); props, boards and trees are added here.
Trees are read straight from ``plantings`` inside the statement: planting sits above the game in
the layers, so the page cannot ask it without importing upwards, and a second round trip for one
sum would double the page's cost. The sum is the one ``app.planting``'s ``count_trees`` makes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from app.core.sql import Statement
from app.energy.forest import ME, collect_ctes, collect_status, collections_of, own_balls
from app.game.leaderboards.scores import add_collected

NOW = "CAST(:now AS timestamptz)"
MAX_BALLS = 500


@dataclass(frozen=True, slots=True)
class ForestRow:
    """The owner's page head (repeated on every row) and one ball (NULL columns: no balls)."""

    handle: str | None
    display_name: str | None
    balance_g: int
    timezone: str
    region: str | None
    prop_types: list[str] | None
    prop_counts: list[int] | None
    prop_until: list[datetime] | None
    trees: int
    steps_due: bool
    ball_id: uuid.UUID | None
    kind: str | None
    amount_g: int | None
    remaining_g: int | None
    created_at: datetime | None
    ripens_at: datetime | None
    expires_at: datetime | None
    state: str | None
    stealable: bool | None
    rules_version: int | None
    by_ids: list[uuid.UUID] | None
    by_handles: list[str | None] | None
    by_amounts: list[int] | None
    by_ats: list[datetime] | None


FOREST = Statement(
    f"""
    WITH head AS (
        SELECT u.handle, u.display_name, u.balance_g, u.timezone, u.region,
               p.types AS prop_types, p.counts AS prop_counts, p.until AS prop_until,
               (SELECT coalesce(sum(pl.quantity), 0)::bigint FROM plantings pl
                WHERE pl.user_id = u.id AND pl.kind = 'tree' AND pl.status <> 'cancelled')
                   AS trees,
               -- closed step days not minted yet: the caller mints them and asks again
               EXISTS (SELECT 1 FROM step_days sd WHERE sd.user_id = u.id
                       AND sd.minted_at IS NULL
                       AND sd.day < ({NOW} AT TIME ZONE u.timezone)::date) AS steps_due
        FROM users u LEFT JOIN LATERAL (
            -- the cards running now (the whole inventory is GET /v1/props)
            SELECT array_agg(type ORDER BY type) AS types, array_agg(count ORDER BY type) AS counts,
                   array_agg(active_until ORDER BY type) AS until
            FROM props WHERE user_id = u.id AND active_until > {NOW}
        ) p ON TRUE
        WHERE u.id = {ME}
    ), balls AS ({own_balls(include_all="CAST(:all AS boolean)")})
    SELECT h.*, b.id AS ball_id, b.kind, b.amount_g, b.remaining_g, b.created_at, b.ripens_at,
           b.expires_at, b.state, b.stealable, b.rules_version,
           c.by_ids, c.by_handles, c.by_amounts, c.by_ats
    FROM head h
    LEFT JOIN balls b ON TRUE
    LEFT JOIN LATERAL ({collections_of("b.id")}) c ON TRUE
    ORDER BY b.created_at DESC, b.id
    """,  # noqa: S608 (constant fragments; values are bind parameters)
    row=ForestRow,
)


@dataclass(frozen=True, slots=True)
class CollectRow:
    """The collect's outcome (repeated on every row) and one requested ball's (NULL: none)."""

    collected_g: int
    balance_g: int
    day_g: int | None
    week_g: int | None
    total_g: int | None
    ball_id: uuid.UUID | None
    ball_g: int | None
    status: str | None


def _collect(which: str, requested: str) -> Statement[CollectRow]:
    """Collect my ripe balls matching ``which`` and report on ``requested`` (a FROM item
    ``r(id, n)``), adding what was collected to my day and week scores."""
    return Statement(
        f"""
        WITH {collect_ctes(which)},
        scores AS ({add_collected(ME, "(SELECT grams FROM total)")}),
        head AS (
            SELECT (SELECT grams FROM total) AS collected_g,
                   coalesce((SELECT balance_g FROM owner), u.balance_g) AS balance_g,
                   (SELECT day_g FROM scores) AS day_g, (SELECT week_g FROM scores) AS week_g,
                   (SELECT collected_total_g FROM owner) AS total_g
            FROM users u WHERE u.id = {ME}
        )
        SELECT h.*, r.id AS ball_id, coalesce(t.grams, 0)::bigint AS ball_g,
               CASE WHEN r.id IS NOT NULL THEN {collect_status("b", "t")} END AS status
        FROM head h LEFT JOIN (
            {requested}
            LEFT JOIN taken t ON t.id = r.id
            LEFT JOIN energy_balls b ON b.id = r.id AND b.user_id = {ME}
        ) ON TRUE
        ORDER BY r.n
        """,  # noqa: S608 (constant fragments; values are bind parameters)
        row=CollectRow,
    )


COLLECT_ALL = _collect("TRUE", "(SELECT id, row_number() OVER (ORDER BY id) AS n FROM taken) r")
COLLECT_SOME = _collect(
    "b.id = ANY(CAST(:ids AS uuid[]))",
    "unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS r(id, n)",
)
