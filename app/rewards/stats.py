"""Rewards in the public ``/v1/stats`` (importing this module registers them)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.planting.schemas import RewardStats
from app.planting.stats import STATS_EXTENSIONS
from app.rewards.repository import RewardsRepository


async def reward_stats(session: AsyncSession) -> dict[str, Any]:
    row = await RewardsRepository(session).stats()
    return {
        "rewards": RewardStats(
            rewards=int(row["rewards"]),
            redemptions_issued=int(row["issued"]),
            redemptions_pending=int(row["pending"]),
            redemptions_failed=int(row["failed"]),
            energy_spent_g=int(row["energy_spent_g"]),
        )
    }


if reward_stats not in STATS_EXTENSIONS:
    STATS_EXTENSIONS.append(reward_stats)
