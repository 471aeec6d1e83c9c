"""/v1/forest: your own forest (balls, balance, props, trees) and collecting it.

Assembled in the game domain because the page shows props and boards next to energy's balls;
both routes are hot: one PostgreSQL statement each (plus the collect rate limit in Redis)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from app.accounts.dependencies import CurrentPrincipal
from app.core.db import SessionDep
from app.core.deps import ClockDep, LimiterDep, RegistryDep, RulesDep
from app.core.idempotency import IdempotencyDep
from app.core.responses import json_response
from app.core.sql import PgDep
from app.energy.schemas import CollectIn, CollectOut, ForestOut
from app.game.forest import service
from app.game.hot import Body, Fetch, respond
from app.game.leaderboards.flusher import FlusherDep
from app.game.leaderboards.scores import Periods

router = APIRouter(tags=["energy"])


@router.get("/v1/forest", response_model=ForestOut)
async def get_forest(
    me: CurrentPrincipal,
    pg: PgDep,
    session: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    all: Annotated[bool, Query(description="include collected and expired balls")] = False,
) -> Response:
    """Your balls (live ones unless ``all``), balance and trees; ``now`` is the server's time."""
    now = clock.now()
    rows = await service.forest_rows(pg, session, registry, me.id, now, all)
    return json_response(service.forest_body(me.id, now, rows))


@router.post("/v1/forest/collect", response_model=CollectOut)
async def collect(
    me: CurrentPrincipal,
    pg: PgDep,
    clock: ClockDep,
    rules: RulesDep,
    limiter: LimiterDep,
    idem: IdempotencyDep,
    flusher: FlusherDep,
    payload: CollectIn | None = None,
) -> Response:
    """Collect every ripe ball, or the given ones; per-ball status for each."""
    await limiter.hit("collect", f"user:{me.id}")
    now = clock.now()
    periods = Periods.at(now, rules.rules.timezone)
    ids = list(dict.fromkeys(payload.ball_ids)) if payload and payload.ball_ids else None

    async def work(fetch: Fetch) -> Body:
        return await service.collect(fetch, me.id, now, periods, ids, flusher)

    return await respond(idem, pg, work, owner=f"user:{me.id}", model=CollectOut)
