"""Every background job, across domains (run by ``canopy worker`` and ``canopy serve``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.privacy import purge_raw_details
from app.config import Settings
from app.core.security import Keys
from app.core.worker import Job, housekeeping_jobs
from app.energy.steps import mint_due_step_days
from app.ledger.entries import book_expired
from app.planting.jobs import planting_jobs
from app.rewards.jobs import rewards_jobs
from app.rules.registry import RulesRegistry


def default_jobs(
    registry: RulesRegistry,
    raw_retention: timedelta = timedelta(days=90),
    *,
    settings: Settings | None = None,
    keys: Keys | None = None,
) -> list[Job]:
    """Every job. Webhook delivery needs ``settings`` and ``keys`` (the app and ``canopy
    worker`` pass them)."""

    async def mint_steps(session: AsyncSession, now: datetime) -> int:
        return await mint_due_step_days(session, now, registry)

    async def purge_raw(session: AsyncSession, now: datetime) -> int:
        return await purge_raw_details(session, now, raw_retention)

    return [
        *housekeeping_jobs(),
        Job("book_expired_balls", timedelta(minutes=1), partial(book_expired)),
        Job("mint_step_days", timedelta(minutes=1), mint_steps),
        Job("purge_raw_details", timedelta(hours=1), purge_raw),
        *planting_jobs(registry, settings, keys),
        *rewards_jobs(registry),
    ]
