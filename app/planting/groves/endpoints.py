"""/v1/groves: joint planting."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from starlette.responses import Response

from app.accounts.dependencies import CurrentPrincipal
from app.core.db import SessionDep
from app.core.deps import ClockDep, RulesDep
from app.core.idempotency import IdempotencyDep
from app.core.ids import parse_id
from app.planting import certificates
from app.planting.groves import service
from app.planting.groves.schemas import (
    ContributeIn,
    ContributionOut,
    GroveIn,
    GroveList,
    GroveOut,
    InviteIn,
    LeftOut,
)

router = APIRouter(prefix="/v1/groves", tags=["groves"])

SVG_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


def _grove_id(value: str) -> uuid.UUID:
    return parse_id(value, "grove")


@router.get("", response_model=GroveList)
async def list_groves(me: CurrentPrincipal, session: SessionDep) -> GroveList:
    """Groves you are in or invited to, open ones first."""
    return GroveList(groves=await service.list_mine(session, me.id))


@router.post(
    "",
    status_code=201,
    response_model=GroveOut,
    responses={409: {"description": "sold_out, not_available or too_many_groves"}},
)
async def create_grove(
    payload: GroveIn,
    me: CurrentPrincipal,
    session: SessionDep,
    clock: ClockDep,
    rules: RulesDep,
    idem: IdempotencyDep,
) -> Response:
    """Start a grove for one catalog item (it holds one unit of the item's budget)."""
    item = parse_id(payload.item_id, "catalog item")

    async def produce() -> GroveOut:
        return await service.create(session, me.id, item, payload.name, rules, clock.now())

    return await idem.run(owner=f"user:{me.id}", status_code=201, produce=produce)


@router.get("/{grove_id}", response_model=GroveOut)
async def get_grove(grove_id: str, me: CurrentPrincipal, session: SessionDep) -> GroveOut:
    """A grove you are in or invited to: its progress and every member's share."""
    return await service.get(session, me.id, _grove_id(grove_id))


@router.post("/{grove_id}/invite", response_model=GroveOut)
async def invite(
    grove_id: str,
    payload: InviteIn,
    me: CurrentPrincipal,
    session: SessionDep,
    clock: ClockDep,
    idem: IdempotencyDep,
) -> Response:
    """Invite a friend (by handle) into your open grove."""
    grove = _grove_id(grove_id)

    async def produce() -> GroveOut:
        return await service.invite(session, me.id, grove, payload.handle, clock.now())

    return await idem.run(owner=f"user:{me.id}", status_code=200, produce=produce)


@router.post(
    "/{grove_id}/join",
    response_model=GroveOut,
    responses={409: {"description": "grove_closed, grove_full or too_many_groves"}},
)
async def join(
    grove_id: str,
    me: CurrentPrincipal,
    session: SessionDep,
    clock: ClockDep,
    rules: RulesDep,
    idem: IdempotencyDep,
) -> Response:
    """Join a grove you were invited to."""
    grove = _grove_id(grove_id)

    async def produce() -> GroveOut:
        return await service.join(session, me.id, grove, rules, clock.now())

    return await idem.run(owner=f"user:{me.id}", status_code=200, produce=produce)


@router.post(
    "/{grove_id}/contribute",
    response_model=ContributionOut,
    responses={409: {"description": "insufficient_energy, grove_closed or grove_needs_members"}},
)
async def contribute(
    grove_id: str,
    payload: ContributeIn,
    me: CurrentPrincipal,
    session: SessionDep,
    clock: ClockDep,
    rules: RulesDep,
    idem: IdempotencyDep,
) -> Response:
    """Put energy into the grove (capped at what it still needs); the contribution that
    reaches the target plants the tree."""
    grove = _grove_id(grove_id)

    async def produce() -> ContributionOut:
        return await service.contribute(session, me.id, grove, payload.amount_g, rules, clock.now())

    return await idem.run(owner=f"user:{me.id}", status_code=200, produce=produce)


@router.post(
    "/{grove_id}/leave", response_model=LeftOut, responses={409: {"description": "grove_closed"}}
)
async def leave(
    grove_id: str,
    me: CurrentPrincipal,
    session: SessionDep,
    clock: ClockDep,
    rules: RulesDep,
    idem: IdempotencyDep,
) -> Response:
    """Leave a grove before it plants: what you put in comes back."""
    grove = _grove_id(grove_id)

    async def produce() -> LeftOut:
        return await service.leave(session, me.id, grove, rules, clock.now())

    return await idem.run(owner=f"user:{me.id}", status_code=200, produce=produce)


@router.get(
    "/{grove_id}/certificate",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}, "description": "the certificate"}},
)
async def certificate(grove_id: str, me: CurrentPrincipal, session: SessionDep) -> Response:
    """The planted grove's certificate (SVG), naming every member and their share."""
    data = await service.certificate(session, me.id, _grove_id(grove_id))
    return Response(certificates.render(data), media_type="image/svg+xml", headers=SVG_HEADERS)
