"""/v1/friends/{id}/revive and /v1/friends/{id}/revivable."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from app.accounts.dependencies import CurrentPrincipal
from app.core.deps import ClockDep, RulesDep
from app.core.idempotency import IdempotencyDep
from app.core.ids import parse_id
from app.core.responses import json_response
from app.core.sql import PgDep
from app.game.hot import Body, Fetch, respond
from app.game.revive import service

router = APIRouter(prefix="/v1", tags=["friends"])


class ReviveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ball_id: Annotated[str, Field(min_length=1, max_length=64)]


class ReviveOut(BaseModel):
    ball_id: uuid.UUID
    revived_g: int  # the owner's new ripe ball
    reviver_g: int  # the reviver's new ripe ball (0: none)


class RevivableBall(BaseModel):
    id: uuid.UUID
    kind: str
    amount_g: int
    lost_g: int  # what expiry took: a revive gives it back
    reviver_g: int  # the reviver's part of it (the owner gets the rest)
    expired_at: datetime
    revive_until: datetime


class RevivableList(BaseModel):
    balls: list[RevivableBall]


@router.get("/friends/{user_id}/revivable", response_model=RevivableList)
async def revivable(
    user_id: str, me: CurrentPrincipal, pg: PgDep, clock: ClockDep, rules: RulesDep
) -> Response:
    """A friend's expired balls you could revive now, oldest first."""
    owner = parse_id(user_id, "friend")
    return json_response(await service.revivable(pg.fetch, me.id, owner, rules, clock.now()))


@router.post(
    "/friends/{user_id}/revive",
    response_model=ReviveOut,
    responses={409: {"description": "already_revived, not_revivable or daily_limit_reached"}},
)
async def revive(
    user_id: str,
    payload: ReviveIn,
    me: CurrentPrincipal,
    pg: PgDep,
    clock: ClockDep,
    rules: RulesDep,
    idem: IdempotencyDep,
) -> Response:
    """Revive a friend's expired ball: they get what expired back as a ripe ball, you a share."""
    owner = parse_id(user_id, "friend")
    ball = parse_id(payload.ball_id, "ball")
    now = clock.now()

    async def work(fetch: Fetch) -> Body:
        return await service.revive(fetch, me.id, owner, ball, rules, now)

    return await respond(idem, pg, work, owner=f"user:{me.id}", model=ReviveOut)
