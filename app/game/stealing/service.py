"""Collecting part of a friend's ripe energy ("stealing"): what a viewer may take, and the take.

The numbers for one ball, for viewer V and owner O, under the rules' ``[stealing]``:
- one take is ``floor(amount_g * max_share)`` (``fixed``) or uniform in ``1..that`` (``random``),
  at least 1 g;
- friends together never take more than ``floor(amount_g * (1 - owner_floor))``;
- V takes once per ball (twice while V's ``double_collect`` card is active);
- nothing while O's ``shield`` is active, nothing from unstealable (watering) balls.
The take itself is ONE statement for all balls of a request: it checks the friendship, locks the
balls, records the take under a key that allows each (ball, friend, n) once, moves the grams,
tells the owner, writes both ledger sides and adds to the collector's scores
(:mod:`app.game.stealing.repository`). The friends list and a friend's forest are one statement
each too, answered straight from their rows.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.sql import Pg
from app.core.users import UserRef
from app.game.forest.service import mint_due_steps
from app.game.friends.service import NotAFriend
from app.game.hot import Body, Fetch, LoginEnded
from app.game.leaderboards.flusher import ScoreFlusher
from app.game.leaderboards.scores import Periods
from app.game.props.service import SHIELD
from app.game.stealing.repository import (
    FRIEND_FOREST,
    FRIENDS,
    TAKE_ALL,
    TAKE_SOME,
    FriendForestRow,
    TakeRow,
    rules_params,
)
from app.rules.registry import RulesRegistry
from app.rules.schema import Rules

ViewerStatus = Literal[
    "available", "waiting", "insufficient", "collected_by_you", "protected", "expired"
]


def one_take_g(amount_g: int, max_share: float) -> int:
    """The most one friend takes from a ball: ``floor(amount_g * max_share)``, at least 1 g.
    Decimal arithmetic, exactly like PostgreSQL's numeric in the SQL ``one_take``."""
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


async def friends(pg: Pg, me: uuid.UUID, now: datetime, rules: Rules, periods: Periods) -> Body:
    """Every friend with what I could take now, when the next ball I could take ripens, their
    energy this week and whether they have expired energy I could revive; friends with energy
    to take first. ``GET /v1/friends``'s body."""
    revive = rules.revive
    rows = await pg.fetch(
        FRIENDS,
        me=me,
        now=now,
        week_start=periods.week_start,
        revive_on=revive.enabled,
        window=revive.window,
        limit=revive.per_day_limit,
        **rules_params(rules),
    )
    return {"friends": rows}  # orjson writes the rows' dataclass fields as they are


async def friend_forest_rows(
    pg: Pg,
    session: AsyncSession,
    registry: RulesRegistry,
    me: uuid.UUID,
    owner: uuid.UUID,
    now: datetime,
    rules: Rules,
) -> list[FriendForestRow]:
    """The friend's live balls as I see them, or :class:`NotAFriend`."""
    params = {"me": me, "owner": owner, "now": now, **rules_params(rules)}
    rows = await pg.fetch(FRIEND_FOREST, **params)
    if not rows:
        raise NotAFriend()
    if rows[0].steps_due:
        head = rows[0]
        await mint_due_steps(session, registry, UserRef(owner, head.timezone, head.region), now)
        rows = await pg.fetch(FRIEND_FOREST, **params)
        if not rows:
            raise NotAFriend()
    return rows


def friend_forest_body(now: datetime, rows: list[FriendForestRow]) -> Body:
    """``GET /v1/friends/{id}/forest``'s body (the fields of ``FriendForestOut``)."""
    head = rows[0]
    running = list(zip(head.prop_types or [], head.prop_until or [], strict=True))
    return {
        "now": now,
        "user": {
            "id": head.owner_id,
            "handle": head.handle or "",
            "display_name": head.display_name,
        },
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
                "rules_version": r.rules_version,
                "viewer_status": r.viewer_status,
                "collectible_g": r.collectible_g,
            }
            for r in rows
            if r.ball_id is not None
        ],
        "shield_until": next((until for kind, until in running if kind == SHIELD), None),
        # a friend sees which cards are running, not how many the owner holds
        "props": [{"type": kind, "count": 0, "active_until": until} for kind, until in running],
        "trees": {"count": 0},
    }


async def take(
    fetch: Fetch,
    me: uuid.UUID,
    owner: uuid.UUID,
    now: datetime,
    rules: Rules,
    periods: Periods,
    ball_ids: list[uuid.UUID] | None,
    flusher: ScoreFlusher,
) -> Body:
    """Take from the friend's ripe balls (all, or the given ones) in one statement, or
    :class:`NotAFriend`; hand my new scores to the boards' flusher. The take's body."""
    params = {"me": me, "owner": owner, "now": now, **rules_params(rules), **periods.bind()}
    if ball_ids is None:
        rows: list[TakeRow] = await fetch(TAKE_ALL, **params)
    else:
        rows = await fetch(TAKE_SOME, ids=ball_ids, **params)
    head = rows[0]
    if not head.friend:
        raise NotAFriend()
    if head.balance_g is None:
        raise LoginEnded()
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
