"""/v1/leaderboards/friends."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from sqlalchemy import text

from app.accounts.dependencies import CurrentUser
from app.core.db import SessionDep
from app.core.deps import ClockDep, RulesDep
from app.game.leaderboards.service import scores
from app.game.schemas import Board, BoardEntry, BoardMe

router = APIRouter(prefix="/v1/leaderboards", tags=["leaderboards"])


@router.get("/friends", response_model=Board)
async def friends_board(
    user: CurrentUser,
    session: SessionDep,
    clock: ClockDep,
    rules: RulesDep,
    request: Request,
    period: Literal["day", "week", "total"] = "week",
) -> Board:
    """You and your friends ranked by energy collected in the period (days and weeks in the
    rules' time zone). Equal energy shares a rank."""
    rows = await session.execute(
        text(
            "SELECT u.id, u.handle FROM users u WHERE u.id = :me OR u.id IN "
            "(SELECT friend_id FROM friendships WHERE user_id = :me)"
        ),
        {"me": user.id},
    )
    people = {r[0]: r[1] for r in rows}
    values = await scores(
        session,
        request.app.state.redis,
        period,
        list(people),
        clock.now(),
        rules.rules.timezone,
        request.app.state.leaderboard_flusher,
    )
    ordered = sorted(people, key=lambda u: (-values[u], people[u] or ""))
    entries: list[BoardEntry] = []
    for position, member in enumerate(ordered, start=1):
        tied = entries and entries[-1].energy_g == values[member]
        rank = entries[-1].rank if tied else position
        entries.append(
            BoardEntry(rank=rank, id=member, handle=people[member], energy_g=values[member])
        )
    mine = next(e for e in entries if e.id == user.id)
    return Board(period=period, entries=entries, me=BoardMe(rank=mine.rank, energy_g=mine.energy_g))
