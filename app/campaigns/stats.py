"""Campaigns in the public ``/v1/stats`` (importing this module registers them)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.campaigns.repository import CampaignsRepository
from app.planting.schemas import CampaignStats
from app.planting.stats import STATS_EXTENSIONS


async def campaign_stats(session: AsyncSession) -> dict[str, Any]:
    row = await CampaignsRepository(session).stats()
    return {
        "campaigns": CampaignStats(
            campaigns=int(row["campaigns"]),
            completed=int(row["completed"]),
            donated_g=int(row["donated_g"]),
            donors=int(row["donors"]),
        )
    }


if campaign_stats not in STATS_EXTENSIONS:
    STATS_EXTENSIONS.append(campaign_stats)
