"""Rewards' background job: a partner-fulfilled redemption left unanswered past its deadline
is failed and refunded (and the partner told, ``reward.expired``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.worker import Job
from app.rewards.service import expire_overdue
from app.rules.registry import RulesRegistry


def rewards_jobs(registry: RulesRegistry) -> list[Job]:
    async def expire(session: AsyncSession, now: datetime) -> int:
        return await expire_overdue(session, now, registry.at(now).version)

    return [Job("expire_pending_redemptions", timedelta(minutes=1), expire)]
