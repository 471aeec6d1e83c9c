"""All SQL of reviving: which expired balls a friend may revive, and the revive itself — ONE
statement that checks the friendship, locks the ball, counts the revive against the reviver's
local day, books what expiry took back out of ``system:expired`` into two new ripe balls (the
owner's and the reviver's) and tells both.

Parameters shared by the parts: ``:me`` (the reviver), ``:owner``, ``:now``, ``:window`` (the
rules' ``revive.window``), ``:limit`` (``revive.per_day_limit``), ``:enabled``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from app.core.sql import Statement
from app.game.friends.repository import friend_of
from app.ledger.booking import EXPIRED, ball, book, system

ME = "CAST(:me AS uuid)"
OWNER = "CAST(:owner AS uuid)"
NOW = "CAST(:now AS timestamptz)"
WINDOW = "CAST(:window AS interval)"
LIMIT = "CAST(:limit AS int)"
ENABLED = "CAST(:enabled AS boolean)"
BALL = "CAST(:ball AS uuid)"
SHARE = "CAST(:share AS numeric)"
VERSION = "CAST(:version AS int)"

#: the kind of the balls a revive creates (they cannot be revived again once they expire)
REVIVE_KIND = "revive"
#: feed item types: the owner's ("a friend revived your energy") and the reviver's
ENERGY_REVIVED = "energy_revived"
REVIVED_FRIEND = "revived_friend"


def lost_g(b: str) -> str:
    """What expiry took (or will take, when the worker has not booked it yet) from ball ``b``."""
    return f"(CASE WHEN {b}.expired_at IS NULL THEN {b}.remaining_g ELSE {b}.expired_g END)"


def revivable(b: str) -> str:
    """Ball ``b`` expired by its time less than ``:window`` ago, lost energy to it, was not
    revived yet and is not itself a revived ball (energy is revived once)."""
    return f"""({b}.revived_at IS NULL AND {b}.kind <> '{REVIVE_KIND}'
        AND {b}.expires_at <= {NOW} AND {b}.expires_at > {NOW} - {WINDOW}
        AND {lost_g(b)} > 0)"""


def revives_left(user: str) -> str:
    """Whether ``user`` may revive again on their local day (``:limit`` not reached)."""
    today = f"({NOW} AT TIME ZONE u.timezone)::date"
    return f"""(coalesce((
        SELECT d.count FROM revive_days d JOIN users u ON u.id = d.user_id
        WHERE d.user_id = {user} AND d.day = {today}), 0) < {LIMIT})"""  # noqa: S608


# --- GET /v1/friends/{id}/revivable -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RevivableRow:
    """The friend (every row) and one ball they could have revived (NULL columns: none)."""

    owner_id: uuid.UUID
    ball_id: uuid.UUID | None
    kind: str | None
    amount_g: int | None
    lost_g: int | None
    expired_at: datetime | None
    revive_until: datetime | None


REVIVABLE = Statement(
    f"""
    WITH friend AS ({friend_of(ME, OWNER)})
    SELECT f.id AS owner_id, b.id AS ball_id, b.kind, b.amount_g, {lost_g("b")} AS lost_g,
           b.expires_at AS expired_at, b.expires_at + {WINDOW} AS revive_until
    FROM friend f
    LEFT JOIN energy_balls b ON b.user_id = f.id AND {ENABLED} AND {revivable("b")}
    ORDER BY b.expires_at, b.id
    """,  # noqa: S608 (constant fragments; values are bind parameters)
    row=RevivableRow,
)


# --- POST /v1/friends/{id}/revive -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReviveRow:
    """The revive's outcome, or what the statement saw to tell why not."""

    friend: bool
    reviver: bool  # the reviver's row was found (a friend, reviving switched on)
    locked: bool  # the ball was revivable and is ours: a refusal now is the daily limit
    revived_g: int | None  # the owner's new ball (NULL: nothing revived)
    reviver_g: int | None  # the reviver's new ball (0: the share rounded to nothing)
    # the ball as the statement's snapshot saw it (NULL: no such ball of the owner)
    ball_found: bool
    kind: str | None
    revived_before: bool | None
    expires_at: datetime | None
    lost_g: int | None
    today: int | None  # the reviver's revives today, as the snapshot saw them


def _statement() -> Statement[ReviveRow]:
    # booked first when the worker has not done it yet: the ball's remaining energy to
    # system:expired (the same transfer the expiry job writes)
    expiry = book(
        "sized s",
        amount="s.lost_g",
        debit=ball(OWNER, "s.id"),
        credit=system(EXPIRED),
        reason="'expire'",
        ref="s.ref",
        rules_version="s.rules_version",
        where="s.expired_at IS NULL",
    )
    back = book(
        "made",
        amount="made.amount_g",
        debit=system(EXPIRED),
        credit=ball("made.user_id", "made.id"),
        reason="'revive'",
        ref="made.ref",
        rules_version=VERSION,
    )
    return Statement(
        f"""
        WITH friend AS ({friend_of(ME, OWNER)}),
        reviver AS (
            SELECT u.id, ({NOW} AT TIME ZONE u.timezone)::date AS today FROM users u
            WHERE u.id = {ME} AND EXISTS (SELECT 1 FROM friend) AND {ENABLED}
        ), target AS (
            -- the ball, locked. FOR UPDATE checks these conditions again on the ball's newest
            -- version once the lock is ours: of friends racing, the first revives it and the
            -- others find it revived (revived_at set), so a ball is revived once
            SELECT b.id, b.remaining_g, b.expired_at, b.ref, b.rules_version,
                   {lost_g("b")} AS lost_g
            FROM energy_balls b
            WHERE b.id = {BALL} AND b.user_id = {OWNER} AND EXISTS (SELECT 1 FROM reviver)
              AND {revivable("b")}
            FOR UPDATE
        ), counted AS (
            -- the reviver's day, counted only for a ball that is being revived
            INSERT INTO revive_days AS d (user_id, day, count)
            SELECT r.id, r.today, 1 FROM reviver r CROSS JOIN target t WHERE {LIMIT} > 0
            ON CONFLICT (user_id, day) DO UPDATE SET count = d.count + 1 WHERE d.count < {LIMIT}
            RETURNING count
        ), sized AS MATERIALIZED (
            SELECT t.*, floor(t.lost_g * {SHARE})::bigint AS reviver_g,
                   t.lost_g - floor(t.lost_g * {SHARE})::bigint AS owner_g
            FROM target t WHERE EXISTS (SELECT 1 FROM counted)
        ), revived AS (
            -- values from the locked row (``target``), not this UPDATE's snapshot of it
            UPDATE energy_balls b
            SET remaining_g = 0, expired_g = s.lost_g, expired_at = coalesce(s.expired_at, {NOW}),
                revived_at = {NOW}, revived_by = {ME}
            FROM sized s WHERE b.id = s.id
            RETURNING b.id
        ), expiry AS ({expiry}),
        made AS (
            INSERT INTO energy_balls (id, user_id, kind, ref, amount_g, remaining_g, stealable,
                created_at, ripens_at, expires_at, expired_at, expired_g, stolen_g,
                rules_version)
            SELECT CAST(:owner_ball AS uuid), {OWNER}, '{REVIVE_KIND}', 'revive:' || s.id,
                   s.owner_g, s.owner_g, FALSE, {NOW}, {NOW}, CAST(:expires AS timestamptz),
                   NULL::timestamptz, 0, 0, {VERSION}
            FROM sized s WHERE s.owner_g > 0
            UNION ALL
            SELECT CAST(:reviver_ball AS uuid), {ME}, '{REVIVE_KIND}', 'revive:' || s.id,
                   s.reviver_g, s.reviver_g, FALSE, {NOW}, {NOW}, CAST(:expires AS timestamptz),
                   NULL::timestamptz, 0, 0, {VERSION}
            FROM sized s WHERE s.reviver_g > 0
            RETURNING id, user_id, amount_g, ref
        ), back AS ({back}),
        told AS (
            INSERT INTO feed_items (user_id, type, actor_id, amount_g, ref, at)
            SELECT {OWNER}, '{ENERGY_REVIVED}', {ME}, s.owner_g, 'ball:' || s.id, {NOW}
            FROM sized s
            UNION ALL
            SELECT {ME}, '{REVIVED_FRIEND}', {OWNER}, s.reviver_g, 'ball:' || s.id, {NOW}
            FROM sized s
        )
        SELECT EXISTS (SELECT 1 FROM friend) AS friend,
               EXISTS (SELECT 1 FROM reviver) AS reviver,
               EXISTS (SELECT 1 FROM target) AS locked,
               s.owner_g AS revived_g, s.reviver_g,
               b.id IS NOT NULL AS ball_found, b.kind, b.revived_at IS NOT NULL AS revived_before,
               b.expires_at, {lost_g("b")} AS lost_g,
               (SELECT d.count FROM revive_days d JOIN reviver r ON d.user_id = r.id
                WHERE d.day = r.today) AS today
        FROM (SELECT 1) AS one
        LEFT JOIN sized s ON TRUE
        LEFT JOIN energy_balls b ON b.id = {BALL} AND b.user_id = {OWNER}
        """,  # noqa: S608 (constant fragments; values are bind parameters)
        row=ReviveRow,
    )


REVIVE = _statement()
