"""Public transparency numbers: users, energy, CO2e, plantings and what each partner planted."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.planting.repository import PlantingRepository
from app.planting.schemas import PartnerStats, PlantingCounts, Stats

# public and the same for everyone: proxies and CDNs may keep it this long
CACHE_SECONDS = 60


async def stats(session: AsyncSession) -> Stats:
    """Aggregates over whole tables; served with ``Cache-Control`` so a CDN absorbs traffic."""
    repo = PlantingRepository(session)
    totals = await repo.stats_totals()
    return Stats(
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
