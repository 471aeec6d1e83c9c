"""Planting's background jobs: cutting orders by the rules, delivering webhooks, forgetting
the ``Idempotency-Key`` of plantings once it is no longer remembered."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.core.security import Keys
from app.core.worker import Job
from app.planting.orders import cut_orders
from app.planting.repository import PlantingRepository
from app.planting.webhooks import deliver_due
from app.rules.registry import RulesRegistry


def planting_jobs(
    registry: RulesRegistry, settings: Settings | None = None, keys: Keys | None = None
) -> list[Job]:
    """Order cutting always; webhook delivery when given the settings (retry schedule, private
    address policy) and the keys (to decrypt partners' signing secrets)."""

    async def cut(session: AsyncSession, now: datetime) -> int:
        # the rules version in force now decides batch_size and batch_max_wait
        return len(await cut_orders(session, now, registry.at(now).rules.planting))

    key_ttl: timedelta = (
        settings.idempotency_ttl if settings else Settings.model_fields["idempotency_ttl"].default
    )

    async def forget_keys(session: AsyncSession, now: datetime) -> int:
        return await PlantingRepository(session).forget_keys_before(now - key_ttl)

    jobs = [
        Job("cut_planting_orders", timedelta(minutes=1), cut),
        Job("forget_planting_idempotency_keys", timedelta(minutes=10), forget_keys),
    ]
    if settings is not None and keys is not None:
        configured, signing = settings, keys

        async def deliver(session: AsyncSession, now: datetime) -> int:
            # claiming, sending and recording need transactions of their own around the HTTP
            # calls; the job's session only lends its engine (it holds no connection)
            engine = session.bind
            assert isinstance(engine, AsyncEngine)
            return await deliver_due(engine, settings=configured, keys=signing, now=now)

        jobs.append(Job("deliver_webhooks", timedelta(seconds=2), deliver))
    return jobs
