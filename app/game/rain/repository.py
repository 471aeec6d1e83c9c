"""All SQL of the energy rain. Starting a play and settling one are ONE statement each (hot
paths); granting a friend an extra play is a cold path of two statements in one transaction.

Parameters shared by the parts: ``:me``, ``:now``, ``:session`` (a session id).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.sql import Statement
from app.ledger.booking import MINTED, book, system, user

ME = "CAST(:me AS uuid)"
NOW = "CAST(:now AS timestamptz)"
SESSION = "CAST(:session AS uuid)"

#: the ledger reason (and ref prefix) of energy a rain paid
REASON = "energy_rain"


def local_day(u: str) -> str:
    """User row ``u``'s local date now."""
    return f"({NOW} AT TIME ZONE {u}.timezone)::date"


# --- POST /v1/games/energy-rain ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartRow:
    player: bool  # the player's row exists
    started: bool
    day: date | None
    plays: int | None  # plays today, as the statement's snapshot saw them (refusals)
    extra: int | None


START = Statement(
    f"""
    WITH player AS (
        SELECT u.id, {local_day("u")} AS today FROM users u WHERE u.id = {ME}
    ), counted AS (
        -- a play counts on the player's local day; friends' grants raise that day's allowance
        INSERT INTO rain_days AS d (user_id, day, plays, extra)
        SELECT p.id, p.today, 1, 0 FROM player p WHERE CAST(:plays_per_day AS int) > 0
        ON CONFLICT (user_id, day) DO UPDATE SET plays = d.plays + 1
        WHERE d.plays < CAST(:plays_per_day AS int) + d.extra
        RETURNING plays
    ), made AS (
        INSERT INTO rain_sessions (user_id, id, seed, balls, max_g, day, created_at, settle_from,
            expires_at, settled_at, energy_g, caught, rules_version)
        SELECT p.id, {SESSION}, CAST(:seed AS bytea), CAST(:balls AS jsonb),
               CAST(:max_g AS bigint), p.today, {NOW}, CAST(:settle_from AS timestamptz),
               CAST(:expires AS timestamptz), NULL, NULL, NULL, CAST(:version AS int)
        FROM player p WHERE EXISTS (SELECT 1 FROM counted)
        RETURNING id
    )
    SELECT EXISTS (SELECT 1 FROM player) AS player, EXISTS (SELECT 1 FROM made) AS started,
           p.today AS day, d.plays, d.extra
    FROM (SELECT 1) AS one
    LEFT JOIN player p ON TRUE
    LEFT JOIN rain_days d ON d.user_id = p.id AND d.day = p.today
    """,  # noqa: S608 (constant fragments; values are bind parameters)
    row=StartRow,
)


# --- POST /v1/games/energy-rain/{id}/settle ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettleRow:
    found: bool  # the caller's session (another user's is not found)
    settled_before: datetime | None
    settle_from: datetime | None
    expires_at: datetime | None
    energy_g: int | None  # paid now (NULL: refused)
    caught: int | None
    balance_g: int | None


_PAY = book(
    "paid p",
    amount="p.grams",
    debit=system(MINTED),
    credit=user(ME, balance_after="pl.balance_g"),
    reason=f"'{REASON}'",
    ref=f"'{REASON}:' || p.id",
    rules_version="p.rules_version",
    joins="CROSS JOIN player pl",
    where="p.grams > 0",
)

SETTLE = Statement(
    f"""
    WITH s AS (
        -- the session, locked: a second settle waits, then finds it settled (FOR UPDATE
        -- checks the conditions again on the newest version)
        SELECT r.id, r.balls, r.max_g, r.rules_version FROM rain_sessions r
        WHERE r.user_id = {ME} AND r.id = {SESSION} AND r.settled_at IS NULL
          AND r.settle_from <= {NOW} AND r.expires_at > {NOW}
        FOR UPDATE
    ), caught AS (
        -- the issued balls the client names (each once, whatever it repeats); unknown ids
        -- match nothing
        SELECT coalesce(sum(CAST(e ->> 'amount_g' AS bigint)), 0) AS grams, count(*) AS n
        FROM s CROSS JOIN jsonb_array_elements(s.balls) AS e
        WHERE e ->> 'id' = ANY(CAST(:collected AS text[]))
    ), paid AS MATERIALIZED (
        SELECT s.id, s.rules_version, LEAST(c.grams, s.max_g)::bigint AS grams, c.n
        FROM s CROSS JOIN caught c
    ), settled AS (
        UPDATE rain_sessions r SET settled_at = {NOW}, energy_g = p.grams, caught = p.n
        FROM paid p WHERE r.user_id = {ME} AND r.id = p.id
        RETURNING r.energy_g
    ), player AS (
        UPDATE users u SET balance_g = u.balance_g + p.grams
        FROM paid p WHERE u.id = {ME} AND p.grams > 0
        RETURNING u.balance_g
    ), entries AS ({_PAY})
    SELECT r.id IS NOT NULL AS found, r.settled_at AS settled_before, r.settle_from,
           r.expires_at, p.grams AS energy_g, p.n::int AS caught,
           coalesce((SELECT balance_g FROM player), u.balance_g) AS balance_g
    FROM (SELECT 1) AS one
    LEFT JOIN rain_sessions r ON r.user_id = {ME} AND r.id = {SESSION}
    LEFT JOIN paid p ON TRUE
    LEFT JOIN users u ON u.id = {ME}
    """,  # noqa: S608 (constant fragments; values are bind parameters)
    row=SettleRow,
)


# --- GET /v1/games/energy-rain ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TodayRow:
    day: date
    plays: int
    extra: int
    granted_to: uuid.UUID | None  # the friend I granted an extra play today


TODAY = Statement(
    f"""
    SELECT {local_day("u")} AS day, coalesce(d.plays, 0) AS plays, coalesce(d.extra, 0) AS extra,
           g.friend_id AS granted_to
    FROM users u
    LEFT JOIN rain_days d ON d.user_id = u.id AND d.day = {local_day("u")}
    LEFT JOIN rain_grants g ON g.granter_id = u.id AND g.day = {local_day("u")}
    WHERE u.id = {ME}
    """,  # noqa: S608 (constant fragments; values are bind parameters)
    row=TodayRow,
)


# --- POST /v1/games/energy-rain/grant (cold path) ---------------------------------------------


async def record_grant(
    session: AsyncSession, me: uuid.UUID, friend: uuid.UUID, now: datetime
) -> bool:
    """Note that I granted today (my local day); False when I did already."""
    row = await session.execute(
        text(
            "INSERT INTO rain_grants (granter_id, day, friend_id, at) "
            "SELECT u.id, (CAST(:now AS timestamptz) AT TIME ZONE u.timezone)::date, :friend, :now "
            "FROM users u WHERE u.id = :me ON CONFLICT DO NOTHING RETURNING granter_id"
        ),
        {"me": me, "friend": friend, "now": now},
    )
    return row.first() is not None


async def add_extra_play(session: AsyncSession, friend: uuid.UUID, now: datetime, cap: int) -> bool:
    """One more play for the friend on their local day, unless friends granted ``cap`` already."""
    row = await session.execute(
        text(
            "INSERT INTO rain_days AS d (user_id, day, plays, extra) "
            "SELECT u.id, (CAST(:now AS timestamptz) AT TIME ZONE u.timezone)::date, 0, 1 "
            "FROM users u WHERE u.id = :friend AND CAST(:cap AS int) > 0 "
            "ON CONFLICT (user_id, day) DO UPDATE SET extra = d.extra + 1 "
            "WHERE d.extra < CAST(:cap AS int) RETURNING extra"
        ),
        {"friend": friend, "now": now, "cap": cap},
    )
    return row.first() is not None
