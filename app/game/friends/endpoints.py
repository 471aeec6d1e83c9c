"""/v1/friend-requests, /v1/friends, /v1/blocks and the friend's forest, take and watering."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from starlette.responses import Response

from app.accounts.dependencies import CurrentPrincipal, CurrentUser
from app.core.db import SessionDep
from app.core.deps import ClockDep, LimiterDep, RegistryDep, RulesDep
from app.core.errors import Forbidden
from app.core.idempotency import IdempotencyDep
from app.core.ids import parse_id
from app.core.responses import json_response
from app.core.sql import PgDep
from app.game.friends import service
from app.game.friends.schemas import (
    FriendList,
    FriendRequestIn,
    FriendRequestList,
    FriendRequestOut,
)
from app.game.hot import Body, Fetch, respond
from app.game.leaderboards.flusher import FlusherDep
from app.game.leaderboards.scores import Periods
from app.game.schemas import (
    FriendCollectIn,
    FriendCollectOut,
    FriendForestOut,
    WaterIn,
    WaterOut,
)
from app.game.stealing import service as stealing
from app.game.watering.service import water as water_friend

router = APIRouter(prefix="/v1", tags=["friends"])


class StealingDisabled(Forbidden):
    code, title = "stealing_disabled", "Collecting friends' energy is switched off"


@router.post(
    "/friend-requests",
    status_code=201,
    response_model=FriendRequestOut,
    responses={200: {"description": "a pending request to this person already exists"}},
)
async def send_request(
    payload: FriendRequestIn,
    user: CurrentUser,
    session: SessionDep,
    clock: ClockDep,
    limiter: LimiterDep,
    idem: IdempotencyDep,
) -> Response:
    """Ask someone (by handle) to be friends; if they already asked you, you are friends now."""
    await limiter.hit("friend_requests", f"user:{user.id}")
    created = False

    async def produce() -> FriendRequestOut:
        nonlocal created
        request, created = await service.send_request(session, user.id, payload.handle, clock.now())
        return request

    return await idem.run(
        owner=f"user:{user.id}", status_code=lambda _: 201 if created else 200, produce=produce
    )


@router.get("/friend-requests", response_model=FriendRequestList, response_model_by_alias=True)
async def list_requests(
    user: CurrentUser,
    session: SessionDep,
    direction: Literal["incoming", "outgoing"] = "incoming",
) -> FriendRequestList:
    """Pending requests to you (``incoming``) or from you (``outgoing``)."""
    return FriendRequestList(
        requests=await service.list_requests(session, user.id, direction == "incoming")
    )


@router.post("/friend-requests/{request_id}/accept", response_model=FriendRequestOut)
async def accept(
    request_id: str,
    user: CurrentUser,
    session: SessionDep,
    clock: ClockDep,
    limiter: LimiterDep,
    idem: IdempotencyDep,
) -> Response:
    await limiter.hit("friend_requests", f"user:{user.id}")
    request = parse_id(request_id, "friend request")

    async def produce() -> FriendRequestOut:
        return await service.respond(session, user.id, request, True, clock.now())

    return await idem.run(owner=f"user:{user.id}", status_code=200, produce=produce)


@router.post("/friend-requests/{request_id}/decline", response_model=FriendRequestOut)
async def decline(
    request_id: str,
    user: CurrentUser,
    session: SessionDep,
    clock: ClockDep,
    limiter: LimiterDep,
    idem: IdempotencyDep,
) -> Response:
    await limiter.hit("friend_requests", f"user:{user.id}")
    request = parse_id(request_id, "friend request")

    async def produce() -> FriendRequestOut:
        return await service.respond(session, user.id, request, False, clock.now())

    return await idem.run(owner=f"user:{user.id}", status_code=200, produce=produce)


@router.get("/friends", response_model=FriendList)
async def list_friends(
    me: CurrentPrincipal, pg: PgDep, clock: ClockDep, rules: RulesDep
) -> Response:
    """Every friend with what you could collect from them now; friends with energy first."""
    now = clock.now()
    periods = Periods.at(now, rules.rules.timezone)
    return json_response(await stealing.friends(pg, me.id, now, rules.rules, periods))


@router.delete("/friends/{user_id}", status_code=204)
async def remove_friend(user_id: str, user: CurrentUser, session: SessionDep) -> Response:
    await service.remove_friend(session, user.id, parse_id(user_id, "friend"))
    return Response(status_code=204)


@router.post("/blocks/{user_id}", status_code=204)
async def block(user_id: str, user: CurrentUser, session: SessionDep, clock: ClockDep) -> Response:
    """Block someone: ends the friendship, hides you from each other, stops their requests."""
    await service.block(session, user.id, parse_id(user_id, "user"), clock.now())
    return Response(status_code=204)


@router.delete("/blocks/{user_id}", status_code=204)
async def unblock(user_id: str, user: CurrentUser, session: SessionDep) -> Response:
    await service.unblock(session, user.id, parse_id(user_id, "user"))
    return Response(status_code=204)


@router.get("/friends/{user_id}/forest", response_model=FriendForestOut)
async def friend_forest(
    user_id: str,
    me: CurrentPrincipal,
    pg: PgDep,
    session: SessionDep,
    clock: ClockDep,
    rules: RulesDep,
    registry: RegistryDep,
) -> Response:
    """A friend's live balls, each with what you could take now and why not otherwise."""
    now = clock.now()
    owner = parse_id(user_id, "friend")
    rows = await stealing.friend_forest_rows(pg, session, registry, me.id, owner, now, rules.rules)
    return json_response(stealing.friend_forest_body(now, rows))


@router.post("/friends/{user_id}/collect", response_model=FriendCollectOut)
async def collect_from_friend(
    user_id: str,
    me: CurrentPrincipal,
    pg: PgDep,
    session: SessionDep,
    clock: ClockDep,
    rules: RulesDep,
    limiter: LimiterDep,
    idem: IdempotencyDep,
    flusher: FlusherDep,
    payload: FriendCollectIn | None = None,
) -> Response:
    """Take your share of a friend's ripe balls (all, or ``ball_ids``)."""
    owner = parse_id(user_id, "friend")
    if not rules.rules.stealing.enabled:
        await service.friend_profile(session, me.id, owner)  # strangers get their 404 first
        raise StealingDisabled()
    await limiter.hit("collect", f"user:{me.id}")
    now = clock.now()
    periods = Periods.at(now, rules.rules.timezone)
    ids = list(dict.fromkeys(payload.ball_ids)) if payload and payload.ball_ids else None

    async def work(fetch: Fetch) -> Body:
        return await stealing.take(fetch, me.id, owner, now, rules.rules, periods, ids, flusher)

    return await respond(idem, pg, work, owner=f"user:{me.id}", model=FriendCollectOut)


@router.post("/friends/{user_id}/water", status_code=201, response_model=WaterOut)
async def water(
    user_id: str,
    payload: WaterIn,
    me: CurrentPrincipal,
    pg: PgDep,
    clock: ClockDep,
    rules: RulesDep,
    idem: IdempotencyDep,
) -> Response:
    """Give a friend energy (one of the rules' amounts), as a ball they alone can collect."""
    owner = parse_id(user_id, "friend")
    now = clock.now()

    async def work(fetch: Fetch) -> Body:
        return await water_friend(fetch, me.id, owner, payload.amount_g, rules, now)

    return await respond(idem, pg, work, owner=f"user:{me.id}", model=WaterOut, status_code=201)
