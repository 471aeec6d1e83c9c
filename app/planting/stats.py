"""Public transparency numbers: users, energy, CO2e, plantings and what each partner planted."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.planting.repository import PlantingRepository
from app.planting.schemas import PartnerStats, PlantingCounts, Stats

# public and the same for everyone: proxies and CDNs may keep it this long
CACHE_SECONDS = 60
# and each process computes it at most this often, however many ask (the aggregates read
# whole tables: an unlimited public endpoint over them would be a cheap denial of service)
FRESH_FOR = timedelta(seconds=10)


# Domains above planting (rewards, campaigns) add their numbers here: each returns fields of
# :class:`Stats` (importing them registers them; planting never imports upwards)
STATS_EXTENSIONS: list[Callable[[AsyncSession], Awaitable[dict[str, Any]]]] = []


class StatsCache:
    """The last computed :class:`Stats` of this process, kept for :data:`FRESH_FOR`; callers
    that find it stale at the same moment wait for one computation, not one each."""

    def __init__(self, fresh_for: timedelta = FRESH_FOR) -> None:
        self._fresh_for = fresh_for
        self._value: Stats | None = None
        self._at: datetime | None = None
        self._lock = asyncio.Lock()

    def _fresh(self, now: datetime) -> Stats | None:
        if self._at is not None and self._at <= now < self._at + self._fresh_for:
            return self._value
        return None

    async def get(self, session: AsyncSession, now: datetime) -> Stats:
        found = self._fresh(now)
        if found is not None:
            return found
        async with self._lock:
            found = self._fresh(now)
            if found is None:
                found = await stats(session)
                self._value, self._at = found, now
            return found


async def stats(session: AsyncSession) -> Stats:
    """Aggregates over whole tables; served with ``Cache-Control`` so a CDN absorbs traffic."""
    repo = PlantingRepository(session)
    totals = await repo.stats_totals()
    extra: dict[str, Any] = {}
    for extend in STATS_EXTENSIONS:
        extra.update(await extend(session))
    return Stats(
        **extra,
        users=int(totals["users"]),
        energy_minted_g=int(totals["energy_minted_g"]),
        co2e_avoided_g=int(totals["co2e_avoided_g"]),
        energy_burned_g=int(totals["energy_burned_g"]),
        plantings=PlantingCounts(**await repo.plantings_by_status()),
        trees_verified=int(totals["trees_verified"]),
        by_partner=[
            PartnerStats(
                id=r["id"],
                name=r["name"],
                plantings=int(r["plantings"]),
                trees_planted=int(r["trees_planted"]),
                trees_verified=int(r["trees_verified"]),
                area_m2_planted=int(r["area_m2_planted"]),
                orders=int(r["orders"]),
            )
            for r in await repo.partner_stats()
        ],
    )
