"""/v1/games/energy-rain: start a play, settle it, grant a friend an extra play."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from app.accounts.dependencies import CurrentPrincipal
from app.core.db import SessionDep
from app.core.deps import ClockDep, RulesDep
from app.core.idempotency import IdempotencyDep
from app.core.ids import parse_id
from app.core.responses import json_response
from app.core.sql import PgDep
from app.game.hot import Body, Fetch, respond
from app.game.rain import service

router = APIRouter(prefix="/v1/games/energy-rain", tags=["games"])

BallId = Annotated[str, Field(min_length=1, max_length=64)]


class RainBallOut(BaseModel):
    id: str
    amount_g: int
    appears_at_ms: int  # after the start of the rain


class RainStarted(BaseModel):
    session_id: uuid.UUID
    balls: list[RainBallOut]
    duration_s: int
    settle_from: datetime  # the rain is over: settle from here...
    expires_at: datetime  # ...until here
    max_g: int  # the most this play pays


class SettleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collected: Annotated[list[BallId], Field(max_length=1000)]


class SettleOut(BaseModel):
    energy_g: int
    caught: int  # issued balls recognised among those reported
    balance_g: int


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    friend_id: Annotated[str, Field(min_length=1, max_length=64)]


class RainToday(BaseModel):
    enabled: bool
    day: date  # your local date
    plays_per_day: int
    extra: int  # extra plays friends granted you today
    played: int
    plays_left: int
    granted_to: uuid.UUID | None  # the friend you granted an extra play today
    max_g_per_play: int


class Granted(BaseModel):
    pass


@router.get("", response_model=RainToday)
async def today(me: CurrentPrincipal, pg: PgDep, clock: ClockDep, rules: RulesDep) -> Response:
    """Your plays today: how many are left, and whether you granted a friend one."""
    return json_response(await service.today(pg.fetch, me.id, rules, clock.now()))


@router.post(
    "",
    status_code=201,
    response_model=RainStarted,
    responses={409: {"description": "daily_limit_reached"}},
)
async def start(
    me: CurrentPrincipal, pg: PgDep, clock: ClockDep, rules: RulesDep, idem: IdempotencyDep
) -> Response:
    """Start a play: the server draws the balls; catch them, then settle once the rain is over."""
    now = clock.now()

    async def work(fetch: Fetch) -> Body:
        return await service.start(fetch, me.id, rules, now)

    return await respond(idem, pg, work, owner=f"user:{me.id}", model=RainStarted, status_code=201)


@router.post(
    "/{session_id}/settle",
    response_model=SettleOut,
    responses={409: {"description": "too_early, already_settled or session_expired"}},
)
async def settle(
    session_id: str,
    payload: SettleIn,
    me: CurrentPrincipal,
    pg: PgDep,
    clock: ClockDep,
    idem: IdempotencyDep,
) -> Response:
    """Report the ids of the balls you caught; the server pays the issued ones, capped."""
    sid = parse_id(session_id, "energy rain session")
    now = clock.now()

    async def work(fetch: Fetch) -> Body:
        return await service.settle(fetch, me.id, sid, payload.collected, now)

    return await respond(idem, pg, work, owner=f"user:{me.id}", model=SettleOut)


@router.post(
    "/grant",
    status_code=204,
    responses={409: {"description": "daily_limit_reached or friend_limit_reached"}},
)
async def grant(
    payload: GrantIn,
    me: CurrentPrincipal,
    session: SessionDep,
    clock: ClockDep,
    rules: RulesDep,
    idem: IdempotencyDep,
) -> Response:
    """Give a friend one extra play today (once per your local day)."""
    friend = parse_id(payload.friend_id, "friend")

    async def produce() -> Granted:
        await service.grant(session, me.id, friend, rules, clock.now())
        return Granted()

    answered = await idem.run(owner=f"user:{me.id}", status_code=204, produce=produce)
    replayed = answered.headers.get("Idempotent-Replayed")
    return Response(
        status_code=204, headers={"Idempotent-Replayed": replayed} if replayed else None
    )
