"""/v1/campaigns (progress, donating, leaderboards) and operators' /admin/v1/campaigns."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from app.accounts.dependencies import CurrentPrincipal
from app.admin.dependencies import AdminDep
from app.campaigns import service
from app.campaigns import stats as _stats  # noqa: F401  (adds campaigns to /v1/stats)
from app.campaigns.schemas import (
    CampaignCreate,
    CampaignList,
    CampaignOut,
    DonateIn,
    DonationCreated,
    Leaderboard,
)
from app.core.db import SessionDep
from app.core.deps import ClockDep, RegistryDep
from app.core.idempotency import IdempotencyDep
from app.core.ids import parse_id

router = APIRouter(tags=["campaigns"])
admin_router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[AdminDep])


@router.get("/v1/campaigns", response_model=CampaignList)
async def list_campaigns(
    principal: CurrentPrincipal, session: SessionDep, clock: ClockDep
) -> CampaignList:
    """Campaigns with their progress: goal, energy raised, donors, status."""
    return CampaignList(campaigns=await service.list_campaigns(session, clock.now()))


@router.get("/v1/campaigns/{campaign_id}", response_model=CampaignOut)
async def get_campaign(
    campaign_id: str, principal: CurrentPrincipal, session: SessionDep, clock: ClockDep
) -> CampaignOut:
    return await service.get_campaign(session, parse_id(campaign_id, "campaign"), clock.now())


@router.post(
    "/v1/campaigns/{campaign_id}/donate",
    status_code=201,
    response_model=DonationCreated,
    responses={409: {"description": "insufficient_energy, not_active or limit_reached"}},
)
async def donate_to_campaign(
    campaign_id: str,
    payload: DonateIn,
    principal: CurrentPrincipal,
    session: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    idem: IdempotencyDep,
) -> Response:
    """Donate energy to a campaign (burned through the ledger); the goal may be exceeded."""
    found = parse_id(campaign_id, "campaign")

    async def produce() -> DonationCreated:
        now = clock.now()
        return await service.donate(
            session, principal.id, found, payload.amount_g, registry.at(now), now
        )

    return await idem.run(owner=f"user:{principal.id}", status_code=201, produce=produce)


@router.get("/v1/campaigns/{campaign_id}/leaderboard", response_model=Leaderboard)
async def campaign_leaderboard(
    campaign_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Leaderboard:
    """The biggest donors, and your place."""
    return await service.leaderboard(
        session, parse_id(campaign_id, "campaign"), principal.id, limit
    )


@admin_router.post("/campaigns", status_code=201, response_model=CampaignOut)
async def create_campaign(
    payload: CampaignCreate, session: SessionDep, clock: ClockDep, idem: IdempotencyDep
) -> Response:
    async def produce() -> CampaignOut:
        return await service.create_campaign(session, payload, clock.now())

    return await idem.run(owner="admin", status_code=201, produce=produce)
