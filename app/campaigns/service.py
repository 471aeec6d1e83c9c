"""Campaigns: goals users donate energy to, with progress, donors and a leaderboard.

A donation is one transaction: the donor's row and then the campaign's are locked, the rules
checked (the campaign is active, the rules' minimum and daily ceiling, the balance), the energy
burned through the ledger, and the donation, the donor's total and the campaign's progress
written. The donation that takes ``raised_g`` from below the goal to at or above it — exactly
one, since each sees the total its predecessor committed — marks the campaign completed and
writes ``campaign.completed`` into the webhook outbox, in the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin import audit
from app.campaigns.errors import DonationLimitReached, InsufficientEnergy, NotActive
from app.campaigns.repository import CampaignsRepository
from app.campaigns.schemas import (
    CampaignCreate,
    CampaignOut,
    CampaignStatus,
    DonationCreated,
    Leaderboard,
    LeaderboardEntry,
)
from app.core.errors import NotFound, Unauthorized, ValidationFailed
from app.ledger.booking import BURNED
from app.ledger.transfers import debit_to_system
from app.planting import webhooks
from app.planting.repository import PlantingRepository, history_at
from app.rules.registry import ActiveRules

COMPLETED = "campaign.completed"


def donation_ref(donation_id: uuid.UUID) -> str:
    """The ledger ``ref`` of a donation's burn."""
    return f"donation:{donation_id}"


def status_of(row: RowMapping, now: datetime) -> CampaignStatus:
    if now < row["starts_at"]:
        return "upcoming"
    if row["completed_at"] is not None:
        return "completed"
    return "active" if now < row["ends_at"] else "ended"


def campaign_out(row: RowMapping, now: datetime) -> CampaignOut:
    return CampaignOut(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        goal_g=row["goal_g"],
        raised_g=row["raised_g"],
        donors=row["donors"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        status=status_of(row, now),
        partner_id=row["partner_id"],
        completed_at=row["completed_at"],
    )


def _event(row: RowMapping) -> dict[str, object]:
    """``campaign.completed``'s ``data``."""
    return {
        "campaign": {
            "id": str(row["id"]),
            "name": row["name"],
            "goal_g": row["goal_g"],
            "raised_g": row["raised_g"],
            "donors": row["donors"],
            "starts_at": history_at(row["starts_at"]),
            "ends_at": history_at(row["ends_at"]),
        },
        "completed_at": history_at(row["completed_at"]),
    }


async def list_campaigns(session: AsyncSession, now: datetime) -> list[CampaignOut]:
    """Every campaign, soonest ending first (operators create a handful a year)."""
    return [campaign_out(r, now) for r in await CampaignsRepository(session).campaigns(since=None)]


async def get_campaign(session: AsyncSession, campaign_id: uuid.UUID, now: datetime) -> CampaignOut:
    row = await CampaignsRepository(session).campaign(campaign_id)
    if row is None:
        raise NotFound("No such campaign")
    return campaign_out(row, now)


async def donate(
    session: AsyncSession,
    user_id: uuid.UUID,
    campaign_id: uuid.UUID,
    amount_g: int,
    rules: ActiveRules,
    now: datetime,
) -> DonationCreated:
    """Donate energy (see the module doc). 409 ``not_active`` (before its start, after its
    end, or campaigns disabled by the rules), ``limit_reached`` (the rules' daily ceiling),
    ``insufficient_energy``; 422 below the rules' minimum."""
    repo = CampaignsRepository(session)
    me = await repo.lock_user(user_id)
    if me is None:
        raise Unauthorized("This login has ended; sign in again")
    campaign = await repo.campaign(campaign_id, lock=True)
    if campaign is None:
        raise NotFound("No such campaign")
    settings = rules.rules.campaigns
    if not settings.enabled or not campaign["starts_at"] <= now < campaign["ends_at"]:
        raise NotActive(f"{campaign['name']} is {status_of(campaign, now)}")
    if amount_g < settings.min_donation_g:
        raise ValidationFailed(
            [{"loc": ["body", "amount_g"], "msg": f"at least {settings.min_donation_g} g"}]
        )
    if settings.daily_limit_g > 0:
        local = now.astimezone(ZoneInfo(me["timezone"] or "UTC"))
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        given = await repo.donated_since(user_id, midnight)
        if given + amount_g > settings.daily_limit_g:
            raise DonationLimitReached(
                f"At most {settings.daily_limit_g} g of donations per day ({given} g today)"
            )
    if int(me["balance_g"]) < amount_g:
        raise InsufficientEnergy(f"This needs {amount_g} g of energy")
    donation_id = uuid.uuid4()
    balance = await debit_to_system(
        session,
        user_id=user_id,
        amount_g=amount_g,
        account=BURNED,
        reason="donate",
        ref=donation_ref(donation_id),
        rules_version=rules.version,
        now=now,
    )
    completes = campaign["completed_at"] is None and (
        int(campaign["raised_g"]) + amount_g >= int(campaign["goal_g"])
    )
    after = await repo.donate(
        donation_id=donation_id,
        campaign_id=campaign_id,
        user_id=user_id,
        amount_g=amount_g,
        completes=completes,
        rules_version=rules.version,
        now=now,
    )
    if completes and after["partner_id"] is not None:
        await webhooks.enqueue(
            PlantingRepository(session), after["partner_id"], COMPLETED, _event(after), now
        )
    return DonationCreated(
        donation_id=donation_id,
        amount_g=amount_g,
        campaign=campaign_out(after, now),
        balance_g=balance,
        created_at=now,
    )


async def leaderboard(
    session: AsyncSession, campaign_id: uuid.UUID, user_id: uuid.UUID, limit: int
) -> Leaderboard:
    repo = CampaignsRepository(session)
    if await repo.campaign(campaign_id) is None:
        raise NotFound("No such campaign")
    entries = [LeaderboardEntry(**dict(r)) for r in await repo.leaders(campaign_id, limit)]
    mine = await repo.place_of(campaign_id, user_id)
    return Leaderboard(entries=entries, me=LeaderboardEntry(**dict(mine)) if mine else None)


async def create_campaign(
    session: AsyncSession, payload: CampaignCreate, now: datetime
) -> CampaignOut:
    """Add a campaign (operators)."""
    repo = CampaignsRepository(session)
    if payload.partner_id is not None and not await repo.partner_exists(payload.partner_id):
        raise ValidationFailed([{"loc": ["body", "partner_id"], "msg": "no such partner"}])
    campaign_id = uuid.uuid4()
    await repo.insert({**payload.model_dump(), "id": campaign_id, "now": now})
    await audit.record(
        session,
        action="campaign.create",
        target=f"campaign:{campaign_id}",
        summary=f"{payload.name}: {payload.goal_g} g from {payload.starts_at.isoformat()} "
        f"to {payload.ends_at.isoformat()}",
        at=now,
    )
    row = await repo.campaign(campaign_id)
    assert row is not None
    return campaign_out(row, now)
