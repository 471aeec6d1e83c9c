"""/v1/props and /admin/v1/props/grant."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app.accounts.dependencies import CurrentUser
from app.admin import audit
from app.admin.dependencies import AdminDep
from app.core.db import SessionDep
from app.core.deps import ClockDep, RulesDep
from app.core.errors import NotFound, ValidationFailed
from app.core.idempotency import IdempotencyDep
from app.game.friends.repository import FriendsRepository
from app.game.props import service
from app.game.schemas import PropBought, PropGranted, PropGrantIn, PropList, PropOut, PropUsed

router = APIRouter(prefix="/v1/props", tags=["props"])
admin_router = APIRouter(prefix="/admin/v1/props", tags=["admin"], dependencies=[AdminDep])


@router.get("", response_model=PropList)
async def list_props(
    user: CurrentUser, session: SessionDep, rules: RulesDep, clock: ClockDep
) -> PropList:
    """Your cards: how many of each type, and until when one is active."""
    states = await service.inventory(session, user.id, rules, clock.now())
    return PropList(
        props=[PropOut(type=s.type, count=s.count, active_until=s.active_until) for s in states]
    )


@router.post("/{prop_type}/use", response_model=PropUsed)
async def use_prop(
    prop_type: str,
    user: CurrentUser,
    session: SessionDep,
    rules: RulesDep,
    clock: ClockDep,
    idem: IdempotencyDep,
) -> Response:
    """Use one card: ``shield`` stops friends collecting from you, ``double_collect`` lets you
    take twice from a friend's ball, until ``active_until``. A retry with the same
    ``Idempotency-Key`` spends no second card."""

    async def produce() -> PropUsed:
        until = await service.use(session, user.id, prop_type, rules, clock.now())
        return PropUsed(type=prop_type, active_until=until)

    return await idem.run(owner=f"user:{user.id}", status_code=200, produce=produce)


@router.post("/{prop_type}/buy", status_code=201, response_model=PropBought)
async def buy_prop(
    prop_type: str,
    user: CurrentUser,
    session: SessionDep,
    rules: RulesDep,
    clock: ClockDep,
    idem: IdempotencyDep,
) -> Response:
    """Buy one card for the rules' ``cost_g`` (409 ``not_for_sale`` when it has none)."""

    async def produce() -> PropBought:
        count, balance = await service.buy(session, user.id, prop_type, rules, clock.now())
        return PropBought(type=prop_type, count=count, balance_g=balance)

    return await idem.run(owner=f"user:{user.id}", status_code=201, produce=produce)


@admin_router.post("/grant", response_model=PropGranted)
async def grant(
    payload: PropGrantIn,
    session: SessionDep,
    rules: RulesDep,
    clock: ClockDep,
    idem: IdempotencyDep,
) -> Response:
    """Give a user cards (audit-logged); a retry with the same ``Idempotency-Key`` gives none
    twice."""
    if payload.type not in rules.rules.props:
        raise ValidationFailed(
            [{"loc": ["body", "type"], "msg": f"unknown prop type {payload.type!r}"}]
        )

    async def produce() -> PropGranted:
        if not await FriendsRepository(session).live_user(payload.user_id):
            raise NotFound("No such user")
        count = await service.add(session, payload.user_id, payload.type, payload.count)
        await audit.record(
            session,
            action="props.granted",
            target=f"user:{payload.user_id}",
            summary=f"{payload.count} x {payload.type} (now holds {count})",
            at=clock.now(),
        )
        return PropGranted(user_id=payload.user_id, type=payload.type, count=count)

    return await idem.run(owner="admin", status_code=200, produce=produce)
