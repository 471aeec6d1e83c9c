"""The own forest page and collecting one's own balls, each one statement
(:mod:`app.game.forest.repository`), answered straight from its rows."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.sql import Pg
from app.core.users import UserRef
from app.energy import steps
from app.game.forest.repository import (
    COLLECT_ALL,
    COLLECT_SOME,
    FOREST,
    MAX_BALLS,
    CollectRow,
    ForestRow,
)
from app.game.hot import Body, Fetch, LoginEnded
from app.game.leaderboards.flusher import ScoreFlusher
from app.game.leaderboards.scores import Periods
from app.game.props.service import SHIELD
from app.rules.registry import RulesRegistry


async def mint_due_steps(
    session: AsyncSession, registry: RulesRegistry, user: UserRef, now: datetime
) -> None:
    """Mint closed step days the page's statement found (rare: once per user and day, unless
    the worker got there first), committed so the next statement sees the balls."""
    await steps.mint_closed_days(session, user, registry, now)
    await session.commit()


async def forest_rows(
    pg: Pg,
    session: AsyncSession,
    registry: RulesRegistry,
    me: uuid.UUID,
    now: datetime,
    include_all: bool,
) -> list[ForestRow]:
    params = {"me": me, "now": now, "all": include_all, "limit": MAX_BALLS}
    rows = await pg.fetch(FOREST, **params)
    if not rows:
        raise LoginEnded()
    if rows[0].steps_due:
        await mint_due_steps(session, registry, UserRef(me, rows[0].timezone, rows[0].region), now)
        rows = await pg.fetch(FOREST, **params)
    return rows


def forest_body(me: uuid.UUID, now: datetime, rows: list[ForestRow]) -> Body:
    """``GET /v1/forest``'s body (the fields of :class:`~app.energy.schemas.ForestOut`)."""
    head = rows[0]
    running = list(
        zip(head.prop_types or [], head.prop_counts or [], head.prop_until or [], strict=True)
    )
    return {
        "now": now,
        "user": {"id": me, "handle": head.handle, "display_name": head.display_name},
        "balance_g": head.balance_g,
        "balls": [
            {
                "id": r.ball_id,
                "kind": r.kind,
                "amount_g": r.amount_g,
                "remaining_g": r.remaining_g,
                "created_at": r.created_at,
                "ripens_at": r.ripens_at,
                "expires_at": r.expires_at,
                "state": r.state,
                "stealable": r.stealable,
                "rules_version": r.rules_version,
                "collections": [
                    {"by": {"id": by, "handle": handle}, "amount_g": grams, "at": at}
                    for by, handle, grams, at in zip(
                        r.by_ids or [],
                        r.by_handles or [],
                        r.by_amounts or [],
                        r.by_ats or [],
                        strict=True,
                    )
                ],
            }
            for r in rows
            if r.ball_id is not None
        ],
        "shield_until": next((until for kind, _, until in running if kind == SHIELD), None),
        "props": [
            {"type": kind, "count": count, "active_until": until} for kind, count, until in running
        ],
        "trees": {"count": head.trees},
    }


async def collect(
    fetch: Fetch,
    me: uuid.UUID,
    now: datetime,
    periods: Periods,
    ball_ids: list[uuid.UUID] | None,
    flusher: ScoreFlusher,
) -> Body:
    """Collect every ripe ball of mine (or the given ones) in one statement; hand my new scores
    to the boards' flusher. ``POST /v1/forest/collect``'s body."""
    params = {"me": me, "now": now, **periods.bind()}
    if ball_ids is None:
        rows: list[CollectRow] = await fetch(COLLECT_ALL, **params)
    else:
        rows = await fetch(COLLECT_SOME, ids=ball_ids, **params)
    if not rows:
        raise LoginEnded()
    head = rows[0]
    if head.collected_g and head.day_g is not None:
        assert head.week_g is not None and head.total_g is not None
        flusher.add(me, periods, head.day_g, head.week_g, head.total_g)
    return {
        "collected_g": head.collected_g,
        "balance_g": head.balance_g,
        "results": [
            {"ball_id": r.ball_id, "collected_g": r.ball_g, "status": r.status}
            for r in rows
            if r.ball_id is not None
        ],
    }
