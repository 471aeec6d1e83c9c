"""All SQL of collecting friends' energy: the friends list, a friend's forest and the take, each
ONE statement composed from the named parts below (the numbers are those of
:mod:`app.game.stealing.service`).

Parameters shared by the parts: ``:me`` (the viewer/collector), ``:owner`` (the friend),
``:now``, ``:share`` and ``:floor`` (the rules' ``max_share`` and ``owner_floor`` as numeric),
``:fixed`` (fixed or random take sizes) and ``:enabled`` (stealing switched on). The viewer's
``double_collect`` card, the owner's ``shield`` and the friendship are read inside each statement.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from app.core.sql import Statement
from app.energy.forest import collector
from app.game.friends.repository import friend_of
from app.game.leaderboards.scores import add_collected, week_collected
from app.game.props.service import DOUBLE_COLLECT, SHIELD
from app.game.revive.repository import revivable, revives_left
from app.ledger.balls import expired, live, ripe
from app.ledger.booking import ball, book, running_balance
from app.rules.schema import Rules

ME = "CAST(:me AS uuid)"
OWNER = "CAST(:owner AS uuid)"
NOW = "CAST(:now AS timestamptz)"
SHARE = "CAST(:share AS numeric)"
FLOOR = "CAST(:floor AS numeric)"
ENABLED = "CAST(:enabled AS boolean)"


def rules_params(rules: Rules) -> dict[str, Any]:
    """The bind parameters the parts below read from the rules in force."""
    s = rules.stealing
    return {
        "share": Decimal(str(s.max_share)),
        "floor": Decimal(str(s.owner_floor)),
        "fixed": s.mode == "fixed",
        "enabled": s.enabled,
    }


# --- named parts ------------------------------------------------------------------------------


def one_take(b: str) -> str:
    """The most one friend takes from ball ``b``: ``floor(amount_g * max_share)``, at least 1."""
    return f"GREATEST(1, floor({b}.amount_g * {SHARE})::bigint)"


def allowance(b: str) -> str:
    """What friends together may still take from ball ``b`` (the owner floor)."""
    return f"(floor({b}.amount_g * (1 - {FLOOR}))::bigint - {b}.stolen_g)"


def possible(b: str) -> str:
    """What one take from ball ``b`` could move now (≤ 0: nothing)."""
    return f"LEAST({one_take(b)}, {allowance(b)}, {b}.remaining_g)"


def card_active(user: str, prop: str) -> str:
    return f"""EXISTS (
        SELECT 1 FROM props WHERE user_id = {user} AND type = '{prop}' AND active_until > {NOW})"""  # noqa: S608


def takes_allowed(user: str) -> str:
    """Takes per ball for ``user`` now: 1, or 2 while their ``double_collect`` card runs."""
    return f"(CASE WHEN {card_active(user, DOUBLE_COLLECT)} THEN 2 ELSE 1 END)"


def shielded(user: str) -> str:
    return card_active(user, SHIELD)


def my_takes(b: str, user: str) -> str:
    """How many times ``user`` took from ball ``b`` (as the statement's snapshot saw it)."""
    return f"""(
        SELECT count(*) FROM ball_steals s WHERE s.ball_id = {b}.id AND s.collector_id = {user})"""  # noqa: S608


def viewer_status(b: str, *, mine: str, allowed: str, shield: str) -> str:
    """What a friend may do with ball ``b``: ``available``, ``waiting`` (not ripe),
    ``insufficient`` (owner floor reached), ``collected_by_you``, ``protected`` (shield or an
    unstealable ball) or ``expired``."""
    return f"""CASE WHEN {expired(b, NOW)} THEN 'expired'
         WHEN {b}.ripens_at > {NOW} THEN 'waiting'
         WHEN {shield} OR NOT {b}.stealable THEN 'protected'
         WHEN {mine} >= {allowed} THEN 'collected_by_you'
         WHEN {possible(b)} <= 0 THEN 'insufficient'
         ELSE 'available' END"""


def still_available(status: str) -> str:
    """A take's status for a ball it did not take although its snapshot said ``available``:
    racing takes reached the owner floor (or emptied it) between the snapshot and the lock."""
    return f"(CASE WHEN ({status}) = 'available' THEN 'insufficient' ELSE ({status}) END)"


# --- GET /v1/friends --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FriendRow:
    """One friend as the list shows it (the response's fields, in its order)."""

    id: uuid.UUID
    handle: str | None
    display_name: str | None
    collectible_g: int
    next_collectible_at: datetime | None
    energy_week_g: int
    can_revive: bool  # the friend has expired energy I could revive now


FRIENDS = Statement(
    f"""
    WITH card AS (
        SELECT {takes_allowed(ME)} AS allowed
    ), f AS (
        SELECT friend_id FROM friendships WHERE user_id = {ME}
    ), shielded AS (
        SELECT user_id FROM props
        WHERE user_id IN (SELECT friend_id FROM f) AND type = '{SHIELD}' AND active_until > {NOW}
    ), balls AS (
        SELECT b.user_id,
               CASE WHEN b.ripens_at <= {NOW} THEN GREATEST({possible("b")}, 0) ELSE 0 END
                   AS now_g,
               CASE WHEN b.ripens_at > {NOW} AND {possible("b")} > 0 THEN b.ripens_at END
                   AS later_at
        FROM energy_balls b JOIN f ON b.user_id = f.friend_id
        WHERE {ENABLED} AND {live("b", NOW)} AND b.stealable
          AND {my_takes("b", ME)} < (SELECT allowed FROM card)
          AND b.user_id NOT IN (SELECT user_id FROM shielded)
    ), per_friend AS (
        SELECT user_id, sum(now_g)::bigint AS now_g, min(later_at) AS later_at
        FROM balls GROUP BY user_id
    ), revivable AS (
        SELECT DISTINCT b.user_id FROM energy_balls b JOIN f ON b.user_id = f.friend_id
        WHERE CAST(:revive_on AS boolean) AND {revivable("b")} AND {revives_left(ME)}
    )
    SELECT u.id, u.handle, u.display_name, coalesce(p.now_g, 0)::bigint AS collectible_g,
           p.later_at AS next_collectible_at,
           {week_collected("s", "u.id")} AS energy_week_g,
           rv.user_id IS NOT NULL AS can_revive
    FROM f JOIN users u ON u.id = f.friend_id
    LEFT JOIN per_friend p ON p.user_id = u.id
    LEFT JOIN revivable rv ON rv.user_id = u.id
    LEFT JOIN collected_scores s ON s.user_id = u.id
    -- friends with energy to take first (most first), then the soonest to ripen, then by handle
    ORDER BY coalesce(p.now_g, 0) = 0, coalesce(p.now_g, 0) DESC, p.later_at IS NULL,
             p.later_at, coalesce(u.handle, '') COLLATE "C", u.id
    """,  # noqa: S608 (constant fragments; values are bind parameters)
    row=FriendRow,
)


# --- GET /v1/friends/{id}/forest --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FriendForestRow:
    """The friend (repeated on every row) and one of their live balls (NULL columns: none)."""

    owner_id: uuid.UUID
    handle: str | None
    display_name: str | None
    timezone: str
    region: str | None
    prop_types: list[str] | None
    prop_until: list[datetime] | None
    steps_due: bool
    ball_id: uuid.UUID | None
    kind: str | None
    amount_g: int | None
    remaining_g: int | None
    created_at: datetime | None
    ripens_at: datetime | None
    expires_at: datetime | None
    state: str | None
    rules_version: int | None
    viewer_status: str | None
    collectible_g: int | None


FRIEND_FOREST = Statement(
    f"""
    WITH friend AS ({friend_of(ME, OWNER)}),
    head AS (
        SELECT friend.*, {takes_allowed(ME)} AS allowed, {shielded(OWNER)} AS shield,
               p.types AS prop_types, p.until AS prop_until,
               -- closed step days not minted yet: the caller mints them and asks again
               EXISTS (SELECT 1 FROM step_days sd WHERE sd.user_id = friend.id
                       AND sd.minted_at IS NULL
                       AND sd.day < ({NOW} AT TIME ZONE friend.timezone)::date) AS steps_due
        FROM friend LEFT JOIN LATERAL (
            -- a friend sees which cards are running, not how many the owner holds
            SELECT array_agg(type ORDER BY type) AS types,
                   array_agg(active_until ORDER BY type) AS until
            FROM props WHERE user_id = friend.id AND active_until > {NOW}
        ) p ON TRUE
    ), balls AS (
        SELECT b.id, b.kind, b.amount_g, b.remaining_g, b.created_at, b.ripens_at, b.expires_at,
               b.rules_version, {possible("b")} AS possible_g,
               {viewer_status("b", mine=my_takes("b", ME), allowed="h.allowed", shield="h.shield")}
                   AS status
        FROM head h JOIN energy_balls b ON b.user_id = h.id
        WHERE {live("b", NOW)}
    )
    SELECT h.id AS owner_id, h.handle, h.display_name, h.timezone, h.region, h.prop_types,
           h.prop_until, h.steps_due,
           b.id AS ball_id, b.kind, b.amount_g, b.remaining_g, b.created_at, b.ripens_at,
           b.expires_at,
           CASE WHEN b.ripens_at > {NOW} THEN 'growing' ELSE 'ripe' END AS state,
           b.rules_version,
           -- stealing switched off: what would be available is protected
           CASE WHEN b.status = 'available' AND NOT {ENABLED} THEN 'protected'
                ELSE b.status END AS viewer_status,
           CASE WHEN b.status = 'available' AND {ENABLED} THEN GREATEST(b.possible_g, 0)
                ELSE 0 END AS collectible_g
    FROM head h LEFT JOIN balls b ON TRUE
    ORDER BY b.ripens_at, b.id
    """,  # noqa: S608 (constant fragments; values are bind parameters)
    row=FriendForestRow,
)


# --- POST /v1/friends/{id}/collect ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TakeRow:
    """The take's outcome (repeated on every row) and one requested ball's (NULL: none)."""

    friend: bool
    collected_g: int
    balance_g: int | None
    day_g: int | None
    week_g: int | None
    total_g: int | None
    ball_id: uuid.UUID | None
    ball_g: int | None
    status: str | None


def _take(which: str, requested: str) -> Statement[TakeRow]:
    """The take from the friend's ripe balls matching ``which`` (SQL over ``b``), reporting on
    ``requested`` (a FROM item ``r(id, n)``, in ``n`` order). All in one statement: friendship,
    card, shield, the take under the (ball, friend, n) key, the owner's feed item, the
    collector's balance, both ledger sides and the collector's scores."""
    allowed = "(SELECT allowed FROM card)"
    entries = book(
        "moves",
        amount="moves.grams",
        debit=ball(OWNER, "moves.id"),
        credit=collector(
            ME,
            "moves.id",
            balance_after=running_balance("c.balance_g", "t.grams", "moves.running"),
        ),
        reason="'steal'",
        # the ball, not its cause: the owner's ball ref names the partner and its event id,
        # which the collector must never learn (friends see only the game)
        ref="'ball:' || moves.id",
        rules_version="moves.rules_version",
        joins="CROSS JOIN collector c CROSS JOIN total t",
    )
    return Statement(
        f"""
        WITH friend AS ({friend_of(ME, OWNER)}),
        card AS (
            SELECT {takes_allowed(ME)} AS allowed
        ), candidates AS (
            -- FOR UPDATE hands back the newest version of each row once its lock is ours (and
            -- checks it against these conditions again), so the sizes below are computed from
            -- what the ball holds now, not from the statement's snapshot. Balls with nothing
            -- left for me are not locked at all: a crowd of friends on one forest queues only
            -- on balls that can still give.
            SELECT b.id, b.amount_g, b.remaining_g, b.stolen_g FROM energy_balls b
            WHERE b.user_id = {OWNER} AND EXISTS (SELECT 1 FROM friend) AND {which}
              AND b.stealable AND NOT {shielded(OWNER)} AND {ripe("b", NOW)}
              AND {possible("b")} > 0 AND {my_takes("b", ME)} < {allowed}
            ORDER BY b.id
            FOR UPDATE
        ), sized AS (
            SELECT b.id, {my_takes("b", ME)} + 1 AS next_n,
                   LEAST(
                       CASE WHEN CAST(:fixed AS boolean) THEN {one_take("b")}
                            ELSE 1 + floor(random() * {one_take("b")})::bigint END,
                       {allowance("b")}, b.remaining_g) AS grams
            FROM candidates b
        ), marked AS (
            -- the key (ball, collector, n) allows each take once, even for racing requests
            INSERT INTO ball_steals (ball_id, collector_id, n, owner_id, amount_g, at)
            SELECT id, {ME}, next_n, {OWNER}, grams, {NOW} FROM sized
            WHERE grams > 0 AND next_n <= {allowed}
            ON CONFLICT DO NOTHING
            RETURNING ball_id, amount_g
        ), taken AS (
            UPDATE energy_balls b
            SET remaining_g = b.remaining_g - m.amount_g, stolen_g = b.stolen_g + m.amount_g
            FROM marked m WHERE b.id = m.ball_id
            RETURNING b.id, m.amount_g AS grams, b.rules_version
        ), total AS (
            SELECT coalesce(sum(grams), 0)::bigint AS grams FROM taken
        ), told AS (
            -- the owner's feed: one item per take request, who took how much
            INSERT INTO feed_items (user_id, type, actor_id, amount_g, at)
            SELECT {OWNER}, 'collected_from_you', {ME}, grams, {NOW} FROM total WHERE grams > 0
        ), collector AS (
            UPDATE users SET balance_g = balance_g + total.grams,
                             collected_total_g = collected_total_g + total.grams
            FROM total WHERE users.id = {ME} AND total.grams > 0
            RETURNING users.balance_g, users.collected_total_g
        ), moves AS MATERIALIZED (
            SELECT taken.*, sum(grams) OVER (ORDER BY id) AS running FROM taken
        ), entries AS ({entries}),
        scores AS ({add_collected(ME, "(SELECT grams FROM total)")}),
        head AS (
            SELECT EXISTS (SELECT 1 FROM friend) AS friend,
                   (SELECT grams FROM total) AS collected_g,
                   coalesce((SELECT balance_g FROM collector), u.balance_g) AS balance_g,
                   (SELECT day_g FROM scores) AS day_g, (SELECT week_g FROM scores) AS week_g,
                   (SELECT collected_total_g FROM collector) AS total_g
            FROM (SELECT 1) AS one LEFT JOIN users u ON u.id = {ME}
        ), requested AS (
            SELECT r.id, r.n FROM {requested} WHERE EXISTS (SELECT 1 FROM friend)
        )
        SELECT h.friend, h.collected_g, h.balance_g, h.day_g, h.week_g, h.total_g,
               r.id AS ball_id, coalesce(t.grams, 0)::bigint AS ball_g,
               CASE WHEN r.id IS NULL THEN NULL
                    WHEN t.id IS NOT NULL THEN 'collected'
                    WHEN b.id IS NULL THEN 'not_found'
                    -- locked and sized but not taken: out of takes, floor reached, or a
                    -- racing request of mine took it first
                    WHEN s.id IS NOT NULL THEN
                        CASE WHEN s.grams <= 0 AND s.next_n <= {allowed} THEN 'insufficient'
                             ELSE 'collected_by_you' END
                    -- not locked: what the statement's snapshot says of the ball, except that
                    -- a ball it still shows as available was locked and found emptied by
                    -- racing takes (the re-check on its newest version dropped it)
                    ELSE {
            still_available(
                viewer_status("b", mine=my_takes("b", ME), allowed=allowed, shield=shielded(OWNER))
            )
        }
               END AS status
        FROM head h LEFT JOIN (
            requested r
            LEFT JOIN taken t ON t.id = r.id
            LEFT JOIN sized s ON s.id = r.id
            LEFT JOIN energy_balls b ON b.id = r.id AND b.user_id = {OWNER}
        ) ON TRUE
        ORDER BY r.n
        """,  # noqa: S608 (constant fragments; values are bind parameters)
        row=TakeRow,
    )


_RIPE_NOW = f"""(
    SELECT b.id, row_number() OVER (ORDER BY b.id) AS n FROM energy_balls b
    WHERE b.user_id = {OWNER} AND {ripe("b", NOW)}) AS r"""  # noqa: S608 (constant fragments)
TAKE_ALL = _take("TRUE", _RIPE_NOW)
TAKE_SOME = _take(
    "b.id = ANY(CAST(:ids AS uuid[]))",
    "unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS r(id, n)",
)
