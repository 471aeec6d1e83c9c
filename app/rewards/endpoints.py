"""/v1/rewards and /v1/redemptions; partners' /partner/v1/redemptions; operators' rewards and
code pools under /admin/v1."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from app.accounts.dependencies import CurrentPrincipal
from app.admin.dependencies import AdminDep
from app.core.db import SessionDep
from app.core.deps import ClockDep, KeysDep, RegistryDep
from app.core.idempotency import IdempotencyDep
from app.core.ids import parse_id
from app.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor
from app.partners.dependencies import partner_with_scope
from app.partners.models import Partner
from app.partners.schemas import Scope
from app.rewards import privacy as _privacy  # noqa: F401  (adds redemptions to data exports)
from app.rewards import service
from app.rewards import stats as _stats  # noqa: F401  (adds rewards to /v1/stats)
from app.rewards.schemas import (
    CodesAdded,
    CodesIn,
    FailIn,
    FulfilIn,
    RedemptionCreated,
    RedemptionOut,
    RedemptionPage,
    RedemptionStatus,
    RewardAdminList,
    RewardAdminOut,
    RewardCreate,
    RewardList,
    RewardPatch,
)

router = APIRouter(tags=["rewards"])
partner_router = APIRouter(prefix="/partner/v1", tags=["partner"])
admin_router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[AdminDep])

RewardsPartner = Annotated[Partner, Depends(partner_with_scope(Scope.rewards))]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


# --- users -----------------------------------------------------------------------------------


@router.get("/v1/rewards", response_model=RewardList)
async def list_rewards(
    principal: CurrentPrincipal, session: SessionDep, clock: ClockDep
) -> RewardList:
    """Rewards energy can be redeemed for now, with what is left of each budget."""
    return RewardList(rewards=await service.list_rewards(session, clock.now()))


@router.post(
    "/v1/rewards/{reward_id}/redeem",
    status_code=201,
    response_model=RedemptionCreated,
    responses={
        409: {"description": "insufficient_energy, sold_out, limit_reached or not_available"}
    },
)
async def redeem_reward(
    reward_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    keys: KeysDep,
    idem: IdempotencyDep,
) -> Response:
    """Redeem energy for a reward: energy burned, budget taken, and a code at once (code
    pools) or once the partner fulfils (``status: pending``)."""

    async def produce() -> RedemptionCreated:
        now = clock.now()
        return await service.redeem(
            session, keys, principal.id, parse_id(reward_id, "reward"), registry.at(now), now
        )

    return await idem.run(owner=f"user:{principal.id}", status_code=201, produce=produce)


@router.get("/v1/redemptions", response_model=RedemptionPage)
async def list_my_redemptions(
    principal: CurrentPrincipal,
    session: SessionDep,
    keys: KeysDep,
    status: RedemptionStatus | None = None,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> RedemptionPage:
    """Your redemptions, newest first, with their codes."""
    return await service.list_redemptions(
        session,
        keys,
        user_id=principal.id,
        status=status,
        before_seq=decode_cursor(cursor),
        limit=limit,
    )


# --- partners --------------------------------------------------------------------------------


@partner_router.get("/redemptions", response_model=RedemptionPage)
async def partner_list_redemptions(
    partner: RewardsPartner,
    session: SessionDep,
    keys: KeysDep,
    status: RedemptionStatus | None = None,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> RedemptionPage:
    """Redemptions of your rewards, newest first (``?status=pending``: those to fulfil)."""
    return await service.list_redemptions(
        session,
        keys,
        partner_id=partner.id,
        status=status,
        before_seq=decode_cursor(cursor),
        limit=limit,
    )


@partner_router.post("/redemptions/{redemption_id}/fulfil", response_model=RedemptionOut)
async def fulfil_redemption(
    redemption_id: str,
    partner: RewardsPartner,
    session: SessionDep,
    clock: ClockDep,
    keys: KeysDep,
    idem: IdempotencyDep,
    payload: FulfilIn | None = None,
) -> Response:
    """You delivered the reward; a ``code`` given here is shown to the user."""
    found = parse_id(redemption_id, "redemption")

    async def produce() -> RedemptionOut:
        code = payload.code if payload else None
        return await service.fulfil(session, keys, partner.id, found, code, clock.now())

    return await idem.run(owner=f"partner:{partner.id}", status_code=200, produce=produce)


@partner_router.post("/redemptions/{redemption_id}/fail", response_model=RedemptionOut)
async def fail_redemption(
    redemption_id: str,
    payload: FailIn,
    partner: RewardsPartner,
    session: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    keys: KeysDep,
    idem: IdempotencyDep,
) -> Response:
    """You cannot deliver: the redemption fails and the user gets the energy back."""
    found = parse_id(redemption_id, "redemption")

    async def produce() -> RedemptionOut:
        now = clock.now()
        return await service.fail(
            session, keys, partner.id, found, payload.reason, registry.at(now).version, now
        )

    return await idem.run(owner=f"partner:{partner.id}", status_code=200, produce=produce)


# --- operators -------------------------------------------------------------------------------


@admin_router.post("/rewards", status_code=201, response_model=RewardAdminOut)
async def create_reward(
    payload: RewardCreate, session: SessionDep, clock: ClockDep, idem: IdempotencyDep
) -> Response:
    async def produce() -> RewardAdminOut:
        return await service.create_reward(session, payload, clock.now())

    return await idem.run(owner="admin", status_code=201, produce=produce)


@admin_router.get("/rewards", response_model=RewardAdminList)
async def admin_list_rewards(session: SessionDep) -> RewardAdminList:
    """Every reward, with budgets, what is taken and the codes left."""
    return RewardAdminList(rewards=await service.list_all_rewards(session))


@admin_router.patch("/rewards/{reward_id}", response_model=RewardAdminOut)
async def update_reward(
    reward_id: str, patch: RewardPatch, session: SessionDep, clock: ClockDep
) -> RewardAdminOut:
    return await service.update_reward(session, parse_id(reward_id, "reward"), patch, clock.now())


@admin_router.post("/rewards/{reward_id}/codes", response_model=CodesAdded)
async def add_reward_codes(
    reward_id: str,
    payload: CodesIn,
    session: SessionDep,
    clock: ClockDep,
    keys: KeysDep,
    idem: IdempotencyDep,
) -> Response:
    """Upload codes to a reward's pool; each is handed out once, ever."""
    found = parse_id(reward_id, "reward")

    async def produce() -> CodesAdded:
        return await service.add_codes(session, keys, found, payload.codes, clock.now())

    return await idem.run(owner="admin", status_code=200, produce=produce)
