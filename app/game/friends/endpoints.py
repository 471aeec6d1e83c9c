"""/v1/friend-requests, /v1/friends, /v1/blocks and the friend's forest, take and watering."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from starlette.responses import Response

from app.accounts.dependencies import CurrentUser
from app.core.db import SessionDep
from app.core.deps import ClockDep, LimiterDep, RegistryDep, RulesDep
from app.core.errors import Forbidden
from app.core.idempotency import IdempotencyDep
from app.core.ids import parse_id
from app.core.users import UserRef
from app.energy import steps
from app.energy.schemas import CollectResult, ForestUser, Trees
from app.game.friends import service
from app.game.friends.repository import FriendsRepository
from app.game.friends.schemas import (
    FriendList,
    FriendOut,
    FriendRequestIn,
    FriendRequestList,
    FriendRequestOut,
)
from app.game.leaderboards.service import record_in_background, scores
from app.game.props import service as props
from app.game.schemas import (
    FriendBallOut,
    FriendCollectIn,
    FriendCollectOut,
    FriendForestOut,
    PropOut,
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
) -> Response:
    """Ask someone (by handle) to be friends; if they already asked you, you are friends now."""
    await limiter.hit("friend_requests", f"user:{user.id}")
    request, created = await service.send_request(session, user.id, payload.handle, clock.now())
    return Response(
        request.model_dump_json(by_alias=True),
        status_code=201 if created else 200,
        media_type="application/json",
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
    request_id: str, user: CurrentUser, session: SessionDep, clock: ClockDep, limiter: LimiterDep
) -> FriendRequestOut:
    await limiter.hit("friend_requests", f"user:{user.id}")
    return await service.respond(
        session, user.id, parse_id(request_id, "friend request"), True, clock.now()
    )


@router.post("/friend-requests/{request_id}/decline", response_model=FriendRequestOut)
async def decline(
    request_id: str, user: CurrentUser, session: SessionDep, clock: ClockDep, limiter: LimiterDep
) -> FriendRequestOut:
    await limiter.hit("friend_requests", f"user:{user.id}")
    return await service.respond(
        session, user.id, parse_id(request_id, "friend request"), False, clock.now()
    )


@router.get("/friends", response_model=FriendList)
async def list_friends(
    user: CurrentUser, session: SessionDep, clock: ClockDep, rules: RulesDep, request: Request
) -> FriendList:
    """Every friend with what you could collect from them now; friends with energy first."""
    now = clock.now()
    double = await props.active_until(session, user.id, props.DOUBLE_COLLECT, now) is not None
    params = stealing.StealParams.of(rules.rules, double)
    summaries = await stealing.friend_summaries(session, user.id, now, params)
    if not rules.rules.stealing.enabled:
        summaries = [
            stealing.FriendSummary(s.id, s.handle, s.display_name, 0, None) for s in summaries
        ]
    week = await scores(
        session,
        request.app.state.redis,
        "week",
        [s.id for s in summaries],
        now,
        rules.rules.timezone,
        request.app.state.leaderboard_pending,
    )
    ordered = sorted(
        summaries,
        key=lambda s: (
            s.collectible_g == 0,
            -s.collectible_g,
            s.next_collectible_at is None,
            s.next_collectible_at or now,
            s.handle or "",
        ),
    )
    return FriendList(
        friends=[
            FriendOut(
                id=s.id,
                handle=s.handle,
                display_name=s.display_name,
                collectible_g=s.collectible_g,
                next_collectible_at=s.next_collectible_at,
                energy_week_g=week.get(s.id, 0),
            )
            for s in ordered
        ]
    )


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


async def _friend(user_id: str, user: CurrentUser, session: SessionDep) -> UserRef:
    """The friend named in the path, or 404 (not a friend, blocked, or nobody: all alike);
    one query."""
    return await service.friend_profile(session, user.id, parse_id(user_id, "friend"))


Friend = Annotated[UserRef, Depends(_friend)]


@router.get("/friends/{user_id}/forest", response_model=FriendForestOut)
async def friend_forest(
    friend: Friend,
    user: CurrentUser,
    session: SessionDep,
    clock: ClockDep,
    rules: RulesDep,
    registry: RegistryDep,
) -> FriendForestOut:
    """A friend's live balls, each with what you could take now and why not otherwise."""
    now = clock.now()
    await steps.mint_closed_days(session, friend, registry, now)
    double = await props.active_until(session, user.id, props.DOUBLE_COLLECT, now) is not None
    balls = await stealing.friend_balls(
        session, user.id, friend.id, now, stealing.StealParams.of(rules.rules, double)
    )
    inventory = await props.inventory(session, friend.id, rules, now)
    shield = next((p.active_until for p in inventory if p.type == props.SHIELD), None)
    handle, display_name = await FriendsRepository(session).names(friend.id)
    return FriendForestOut(
        now=now,
        user=ForestUser(id=friend.id, handle=handle or "", display_name=display_name),
        balls=[
            FriendBallOut(
                id=b.id,
                kind=b.kind,
                amount_g=b.amount_g,
                remaining_g=b.remaining_g,
                created_at=b.created_at,
                ripens_at=b.ripens_at,
                expires_at=b.expires_at,
                state="growing" if b.ripens_at > now else "ripe",
                rules_version=b.rules_version,
                viewer_status=(
                    b.viewer_status
                    if rules.rules.stealing.enabled or b.viewer_status != "available"
                    else "protected"
                ),
                collectible_g=b.collectible_g if rules.rules.stealing.enabled else 0,
            )
            for b in balls
        ],
        shield_until=shield,
        # a friend sees which cards are running, not how many the owner holds
        props=[
            PropOut(type=p.type, count=0, active_until=p.active_until)
            for p in inventory
            if p.active_until is not None
        ],
        trees=Trees(count=0),
    )


@router.post("/friends/{user_id}/collect", response_model=FriendCollectOut)
async def collect_from_friend(
    friend: Friend,
    user: CurrentUser,
    session: SessionDep,
    clock: ClockDep,
    rules: RulesDep,
    limiter: LimiterDep,
    idem: IdempotencyDep,
    request: Request,
    background: BackgroundTasks,
    payload: FriendCollectIn | None = None,
) -> Response:
    """Take your share of a friend's ripe balls (all, or ``ball_ids``)."""
    if not rules.rules.stealing.enabled:
        raise StealingDisabled()
    await limiter.hit("collect", f"user:{user.id}")
    now = clock.now()
    collected = 0

    async def produce() -> FriendCollectOut:
        nonlocal collected
        ids = list(dict.fromkeys(payload.ball_ids)) if payload and payload.ball_ids else None
        balance, outcomes = await stealing.take(session, user.id, friend.id, now, rules.rules, ids)
        total = collected = sum(o.collected_g for o in outcomes)
        return FriendCollectOut(
            collected_g=total,
            balance_g=balance,
            results=[
                CollectResult(ball_id=o.ball_id, collected_g=o.collected_g, status=o.status)
                for o in outcomes
            ],
        )

    response = await idem.run(owner=f"user:{user.id}", status_code=200, produce=produce)
    if collected:
        background.add_task(record_in_background, request.app.state, [user.id], now)
    return response


@router.post("/friends/{user_id}/water", status_code=201, response_model=WaterOut)
async def water(
    friend: Friend,
    payload: WaterIn,
    user: CurrentUser,
    session: SessionDep,
    clock: ClockDep,
    rules: RulesDep,
    idem: IdempotencyDep,
) -> Response:
    """Give a friend energy (one of the rules' amounts), as a ball they alone can collect."""

    async def produce() -> WaterOut:
        balance = await water_friend(
            session, user.id, user.timezone, friend.id, payload.amount_g, rules, clock.now()
        )
        return WaterOut(watered_g=payload.amount_g, balance_g=balance)

    return await idem.run(owner=f"user:{user.id}", status_code=201, produce=produce)
