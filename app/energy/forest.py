"""A user's own forest: live balls with their state, and collecting them."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger.entries import INSERT_ENTRY_COLUMNS

BallState = Literal["growing", "ripe", "collected", "expired"]


@dataclass
class Collection:
    by_id: uuid.UUID
    by_handle: str | None
    amount_g: int
    at: datetime


@dataclass
class BallView:
    id: uuid.UUID
    kind: str
    amount_g: int
    remaining_g: int
    created_at: datetime
    ripens_at: datetime
    expires_at: datetime
    state: BallState
    stealable: bool
    rules_version: int
    collections: list[Collection] = field(default_factory=list)


def ball_state(
    now: datetime, remaining_g: int, ripens_at: datetime, expires_at: datetime, expired: bool
) -> BallState:
    """Derived from time, so nothing has to flip millions of rows at 07:00."""
    if expired or (remaining_g > 0 and now >= expires_at):
        return "expired"
    if remaining_g == 0:
        return "collected"
    return "growing" if now < ripens_at else "ripe"


async def list_balls(
    session: AsyncSession, user_id: uuid.UUID, now: datetime, *, include_all: bool, limit: int = 500
) -> list[BallView]:
    """Live balls (growing or ripe), or with ``include_all`` the newest ``limit`` of any state,
    each with who collected how much from it. Two queries whatever the number of balls."""
    rows = await session.execute(
        text(
            "SELECT id, kind, amount_g, remaining_g, created_at, ripens_at, expires_at, "
            "expired_at IS NOT NULL, stealable, rules_version FROM energy_balls "
            "WHERE user_id = :user AND (CAST(:all AS boolean) OR (remaining_g > 0 "
            "AND expired_at IS NULL AND expires_at > :now)) "
            "ORDER BY created_at DESC, id LIMIT :limit"
        ),
        {"user": user_id, "now": now, "limit": limit, "all": include_all},
    )
    balls = [
        BallView(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            ball_state(now, r[3], r[5], r[6], r[7]),
            r[8],
            r[9],
        )
        for r in rows
    ]
    if not balls:
        return balls
    takes = await session.execute(
        text(
            "SELECT le.ball_id, le.user_id, u.handle, le.amount_g, le.at FROM ledger_entries le "
            "JOIN users u ON u.id = le.user_id "
            "WHERE le.ball_id = ANY(CAST(:balls AS uuid[])) AND le.account = 'user' "
            "AND le.reason IN ('collect', 'steal') ORDER BY le.id"
        ),
        {"balls": [b.id for b in balls]},
    )
    by_ball: dict[uuid.UUID, list[Collection]] = defaultdict(list)
    for ball_id, by_id, handle, amount, at in takes:
        by_ball[ball_id].append(Collection(by_id, handle, amount, at))
    for ball in balls:
        ball.collections = by_ball.get(ball.id, [])
    return balls


@dataclass(frozen=True)
class CollectOutcome:
    ball_id: uuid.UUID
    collected_g: int
    status: str


# only constants are interpolated (the ledger's column list, then the id filter variants)
_COLLECT = f"""
WITH candidates AS (
    SELECT id, remaining_g, ref, rules_version FROM energy_balls
    WHERE user_id = :user AND {{which}}
      AND ripens_at <= :now AND expires_at > :now AND remaining_g > 0 AND expired_at IS NULL
    ORDER BY id
    FOR UPDATE
), taken AS (
    UPDATE energy_balls b SET remaining_g = 0 FROM candidates c
    WHERE b.id = c.id
    RETURNING b.id, c.remaining_g AS grams, c.ref, c.rules_version
), total AS (
    SELECT coalesce(sum(grams), 0) AS grams FROM taken
), owner AS (
    UPDATE users SET balance_g = balance_g + total.grams,
                     collected_total_g = collected_total_g + total.grams
    FROM total WHERE users.id = :user
    RETURNING users.balance_g
), moves AS MATERIALIZED (
    SELECT taken.*, gen_random_uuid() AS transfer,
           sum(grams) OVER (ORDER BY id) AS running
    FROM taken
), entries AS (
    INSERT INTO ledger_entries ({INSERT_ENTRY_COLUMNS})
    SELECT transfer, 'ball', :user, id, -grams, NULL::bigint, 'collect', ref, rules_version, :now
    FROM moves
    UNION ALL
    SELECT m.transfer, 'user', :user, m.id, m.grams,
           o.balance_g - t.grams + m.running, 'collect', m.ref, m.rules_version, :now
    FROM moves m, owner o, total t
), requested AS (
    SELECT id FROM {{requested}}
)
SELECT NULL::uuid AS id, 0::bigint AS grams, 'balance' AS status, (SELECT balance_g FROM owner)
UNION ALL
SELECT r.id, coalesce(t.grams, 0),
       CASE WHEN t.id IS NOT NULL THEN 'collected'
            WHEN b.id IS NULL THEN 'not_found'
            WHEN b.expired_at IS NOT NULL OR (b.remaining_g > 0 AND b.expires_at <= :now)
                 THEN 'expired'
            WHEN b.ripens_at > :now THEN 'not_ripe'
            ELSE 'empty' END,
       NULL
FROM requested r
LEFT JOIN taken t ON t.id = r.id
LEFT JOIN energy_balls b ON b.id = r.id AND b.user_id = :user
"""  # noqa: S608

COLLECT_ALL = text(_COLLECT.format(which="TRUE", requested="taken"))
COLLECT_SOME = text(
    _COLLECT.format(
        which="id = ANY(CAST(:ids AS uuid[]))",
        requested="unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS r(id, n) ORDER BY n",
    )
)


async def collect_own(
    session: AsyncSession, user_id: uuid.UUID, now: datetime, ball_ids: list[uuid.UUID] | None
) -> tuple[int, list[CollectOutcome]]:
    """Take every ripe ball (or the given ones) whole, in ONE statement: lock, empty, credit the
    balance and write both ledger sides. Concurrent collects queue on the row locks and then see
    the ball empty, so a ball is never paid out twice. Returns (balance_g, per-ball outcomes)."""
    if ball_ids is None:
        rows = await session.execute(COLLECT_ALL, {"user": user_id, "now": now})
    else:
        rows = await session.execute(COLLECT_SOME, {"user": user_id, "now": now, "ids": ball_ids})
    balance = 0
    outcomes: list[CollectOutcome] = []
    for ball_id, grams, status, balance_g in rows:
        if status == "balance":
            balance = int(balance_g)
        else:
            outcomes.append(CollectOutcome(ball_id, int(grams), status))
    return balance, outcomes
