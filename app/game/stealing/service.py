"""Collecting part of a friend's ripe energy ("stealing"): what a viewer may take, and the take.

The numbers for one ball, for viewer V and owner O, under the rules' ``[stealing]``:
- one take is ``floor(amount_g * max_share)`` (``fixed``) or uniform in ``1..that`` (``random``),
  at least 1 g;
- friends together never take more than ``floor(amount_g * (1 - owner_floor))``;
- V takes once per ball (twice while V's ``double_collect`` card is active);
- nothing while O's ``shield`` is active, nothing from unstealable (watering) balls.
The take itself is ONE statement for all balls of a request: it locks the balls, records the take
under a key that allows each (ball, friend, n) once, moves the grams and writes both ledger sides.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger.entries import INSERT_ENTRY_COLUMNS
from app.rules.schema import Rules

ViewerStatus = Literal[
    "available", "waiting", "insufficient", "collected_by_you", "protected", "expired"
]

# one take and the friends' remaining allowance, from a ball row aliased b (numeric params)
_ONE_TAKE = "GREATEST(1, floor(b.amount_g * CAST(:share AS numeric))::bigint)"
_ALLOWANCE = "(floor(b.amount_g * (1 - CAST(:floor AS numeric)))::bigint - b.stolen_g)"
_POSSIBLE = f"LEAST({_ONE_TAKE}, {_ALLOWANCE}, b.remaining_g)"
_SHIELDED = (
    "EXISTS (SELECT 1 FROM props WHERE user_id = :owner AND type = 'shield' "
    "AND active_until > :now)"
)
_MY_TAKES = (
    "LEFT JOIN LATERAL (SELECT count(*) AS n FROM ball_steals s "
    "WHERE s.ball_id = b.id AND s.collector_id = :me) mine ON TRUE"
)
_MY_TAKES_NOW = (
    "(SELECT count(*) FROM ball_steals s WHERE s.ball_id = b.id AND s.collector_id = :me)"
)
_STATUS = f"""
    CASE WHEN b.expired_at IS NOT NULL OR b.expires_at <= :now THEN 'expired'
         WHEN b.ripens_at > :now THEN 'waiting'
         WHEN {_SHIELDED} OR NOT b.stealable THEN 'protected'
         WHEN mine.n >= :allowed THEN 'collected_by_you'
         WHEN {_POSSIBLE} <= 0 THEN 'insufficient'
         ELSE 'available' END"""


@dataclass(frozen=True)
class StealParams:
    share: float
    floor: float
    fixed: bool
    allowed: int  # takes per ball for this collector right now (1, or 2 with double_collect)

    @classmethod
    def of(cls, rules: Rules, double_collect_active: bool) -> StealParams:
        s = rules.stealing
        return cls(s.max_share, s.owner_floor, s.mode == "fixed", 2 if double_collect_active else 1)

    def bind(self, **extra: Any) -> dict[str, Any]:
        return {
            "share": str(self.share),
            "floor": str(self.floor),
            "fixed": self.fixed,
            "allowed": self.allowed,
            **extra,
        }


def one_take_g(amount_g: int, max_share: float) -> int:
    """The most one friend takes from a ball: ``floor(amount_g * max_share)``, at least 1 g.
    Decimal arithmetic, exactly like PostgreSQL's numeric in ``_ONE_TAKE``."""
    return max(1, int((Decimal(amount_g) * Decimal(str(max_share))).to_integral_value(ROUND_FLOOR)))


def friends_allowance_g(amount_g: int, owner_floor: float, stolen_g: int) -> int:
    """What friends together may still take: ``floor(amount_g * (1 - owner_floor)) - stolen_g``."""
    cap = (Decimal(amount_g) * (1 - Decimal(str(owner_floor)))).to_integral_value(ROUND_FLOOR)
    return int(cap) - stolen_g


def take_size(
    amount_g: int, remaining_g: int, stolen_g: int, rules: Rules, draw: float | None = None
) -> int:
    """Grams one take moves, the same formula as the SQL take (the simulator uses this);
    ``draw`` in [0, 1) is the random mode's uniform draw. 0 means nothing may be taken."""
    s = rules.stealing
    most = one_take_g(amount_g, s.max_share)
    wanted = most if s.mode == "fixed" else 1 + int((draw or 0.0) * most)
    return max(0, min(wanted, friends_allowance_g(amount_g, s.owner_floor, stolen_g), remaining_g))


@dataclass(frozen=True)
class FriendBall:
    id: uuid.UUID
    kind: str
    amount_g: int
    remaining_g: int
    created_at: datetime
    ripens_at: datetime
    expires_at: datetime
    rules_version: int
    viewer_status: ViewerStatus
    collectible_g: int


async def friend_balls(
    session: AsyncSession, me: uuid.UUID, owner: uuid.UUID, now: datetime, params: StealParams
) -> list[FriendBall]:
    """The owner's live balls as ``me`` sees them: status and what I could take now."""
    rows = await session.execute(
        text(
            f"""
            SELECT b.id, b.kind, b.amount_g, b.remaining_g, b.created_at, b.ripens_at,
                   b.expires_at, b.rules_version, {_STATUS} AS status, GREATEST({_POSSIBLE}, 0)
            FROM energy_balls b {_MY_TAKES}
            WHERE b.user_id = :owner AND b.remaining_g > 0 AND b.expired_at IS NULL
              AND b.expires_at > :now
            ORDER BY b.ripens_at, b.id
            """  # noqa: S608 (constant SQL fragments only)
        ),
        params.bind(me=me, owner=owner, now=now),
    )
    balls = []
    for r in rows:
        status: ViewerStatus = r[8]
        balls.append(
            FriendBall(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                status,
                int(r[9]) if status == "available" else 0,
            )
        )
    return balls


@dataclass(frozen=True)
class FriendSummary:
    id: uuid.UUID
    handle: str | None
    display_name: str | None
    collectible_g: int
    next_collectible_at: datetime | None


async def friend_summaries(
    session: AsyncSession, me: uuid.UUID, now: datetime, params: StealParams
) -> list[FriendSummary]:
    """Every friend with what I could take now and when the next ball I could take ripens, in
    one statement however many friends there are."""
    rows = await session.execute(
        text(
            f"""
            WITH f AS (SELECT friend_id FROM friendships WHERE user_id = :me),
            shielded AS (
                SELECT user_id FROM props
                WHERE user_id IN (SELECT friend_id FROM f) AND type = 'shield'
                  AND active_until > :now
            ),
            balls AS (
                SELECT b.user_id,
                       CASE WHEN b.ripens_at <= :now THEN GREATEST({_POSSIBLE}, 0) ELSE 0 END
                           AS now_g,
                       CASE WHEN b.ripens_at > :now AND {_POSSIBLE} > 0 THEN b.ripens_at END
                           AS later_at
                FROM energy_balls b JOIN f ON b.user_id = f.friend_id
                {_MY_TAKES}
                WHERE b.remaining_g > 0 AND b.expired_at IS NULL AND b.expires_at > :now
                  AND b.stealable AND mine.n < :allowed
                  AND b.user_id NOT IN (SELECT user_id FROM shielded)
            )
            SELECT u.id, u.handle, u.display_name, coalesce(sum(balls.now_g), 0),
                   min(balls.later_at)
            FROM f JOIN users u ON u.id = f.friend_id
            LEFT JOIN balls ON balls.user_id = f.friend_id
            GROUP BY u.id, u.handle, u.display_name
            """  # noqa: S608 (constant SQL fragments only)
        ),
        params.bind(me=me, now=now),
    )
    return [FriendSummary(r[0], r[1], r[2], int(r[3]), r[4]) for r in rows]


@dataclass(frozen=True)
class TakeOutcome:
    ball_id: uuid.UUID
    collected_g: int
    status: str


_STEAL = f"""
WITH card AS (
    -- the collector's double_collect card lets them take from a ball twice while it runs
    SELECT CASE WHEN EXISTS (SELECT 1 FROM props WHERE user_id = :me AND type = 'double_collect'
                             AND active_until > :now) THEN 2 ELSE 1 END AS allowed
), candidates AS (
    -- FOR UPDATE hands back the newest version of each row once its lock is ours, so the
    -- sizes below are computed from what the ball holds now, not from the statement's snapshot
    SELECT b.id, b.amount_g, b.remaining_g, b.stolen_g FROM energy_balls b
    WHERE b.user_id = :owner AND {{which}} AND b.stealable AND NOT {_SHIELDED}
      AND b.ripens_at <= :now AND b.expires_at > :now AND b.expired_at IS NULL
      AND b.remaining_g > 0
    ORDER BY b.id
    FOR UPDATE
), sized AS (
    SELECT b.id, mine.n + 1 AS next_n,
           LEAST(
               CASE WHEN :fixed THEN {_ONE_TAKE}
                    ELSE 1 + floor(random() * {_ONE_TAKE})::bigint END,
               {_ALLOWANCE}, b.remaining_g) AS grams
    FROM candidates b
    {_MY_TAKES}
), marked AS (
    INSERT INTO ball_steals (ball_id, collector_id, n, owner_id, amount_g, at)
    SELECT id, :me, next_n, :owner, grams, :now FROM sized
    WHERE grams > 0 AND next_n <= :allowed
    ON CONFLICT DO NOTHING
    RETURNING ball_id, amount_g
), taken AS (
    UPDATE energy_balls b
    SET remaining_g = b.remaining_g - m.amount_g, stolen_g = b.stolen_g + m.amount_g
    FROM marked m WHERE b.id = m.ball_id
    RETURNING b.id, m.amount_g AS grams, b.ref, b.rules_version
), total AS (
    SELECT coalesce(sum(grams), 0) AS grams FROM taken
), told AS (
    -- the owner's feed: one item per take request, who took how much
    INSERT INTO feed_items (user_id, type, actor_id, amount_g, at)
    SELECT :owner, 'collected_from_you', :me, grams, :now FROM total WHERE grams > 0
), collector AS (
    UPDATE users SET balance_g = balance_g + total.grams,
                     collected_total_g = collected_total_g + total.grams
    FROM total WHERE users.id = :me
    RETURNING users.balance_g
), moves AS MATERIALIZED (
    SELECT taken.*, gen_random_uuid() AS transfer, sum(grams) OVER (ORDER BY id) AS running
    FROM taken
), entries AS (
    INSERT INTO ledger_entries ({INSERT_ENTRY_COLUMNS})
    SELECT transfer, 'ball', :owner, id, -grams, NULL::bigint, 'steal', ref, rules_version, :now
    FROM moves
    UNION ALL
    SELECT m.transfer, 'user', :me, m.id, m.grams, c.balance_g - t.grams + m.running, 'steal',
           m.ref, m.rules_version, :now
    FROM moves m, collector c, total t
), requested AS (
    SELECT id FROM {{requested}}
)
SELECT NULL::uuid, 0::bigint, 'balance', (SELECT balance_g FROM collector)
UNION ALL
SELECT r.id, coalesce(t.grams, 0),
       CASE WHEN t.id IS NOT NULL THEN 'collected'
            WHEN b.id IS NULL THEN 'not_found'
            ELSE {_STATUS.replace("mine.n", _MY_TAKES_NOW)} END,
       NULL
FROM requested r
LEFT JOIN taken t ON t.id = r.id
LEFT JOIN energy_balls b ON b.id = r.id AND b.user_id = :owner
"""  # noqa: S608 (constant SQL fragments only)

_RIPE_NOW = (
    "(SELECT id FROM energy_balls WHERE user_id = :owner AND ripens_at <= :now "
    "AND expires_at > :now AND expired_at IS NULL AND remaining_g > 0) AS r"
)
_STEAL = _STEAL.replace(":allowed", "(SELECT allowed FROM card)")
STEAL_ALL = text(_STEAL.format(which="TRUE", requested=_RIPE_NOW))
STEAL_SOME = text(
    _STEAL.format(
        which="b.id = ANY(CAST(:ids AS uuid[]))",
        requested="unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS r(id, n) ORDER BY n",
    )
)


async def take(
    session: AsyncSession,
    me: uuid.UUID,
    owner: uuid.UUID,
    now: datetime,
    rules: Rules,
    ball_ids: list[uuid.UUID] | None,
) -> tuple[int, list[TakeOutcome]]:
    """Take from the owner's ripe balls (all, or the given ones), tell the owner, and return
    (my balance, outcomes) — all in one statement, double-collect card included."""
    bind = StealParams.of(rules, double_collect_active=False).bind(me=me, owner=owner, now=now)
    del bind["allowed"]  # the statement reads the card itself
    if ball_ids is None:
        rows = await session.execute(STEAL_ALL, bind)
    else:
        rows = await session.execute(STEAL_SOME, {**bind, "ids": ball_ids})
    balance = 0
    outcomes: list[TakeOutcome] = []
    for ball_id, grams, status, balance_g in rows:
        if status == "balance":
            balance = int(balance_g)
        else:
            outcomes.append(TakeOutcome(ball_id, int(grams), status))
    return balance, outcomes
