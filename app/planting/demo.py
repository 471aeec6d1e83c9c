"""``canopy demo``: a demo NGO partner and a catalog after Ant Forest's, so a fresh service has
something to plant. Safe to run again: what exists is left alone (and its secrets stay unshown).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import typer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings, get_settings
from app.core import migrate
from app.core.clock import SystemClock
from app.core.db import create_engine, create_sessionmaker
from app.core.security import Keys
from app.core.services import resolve_services
from app.partners.schemas import PartnerCreate, Scope
from app.partners.service import create_partner
from app.planting.catalog import create_item
from app.planting.repository import PlantingRepository
from app.planting.schemas import CatalogCreate

PARTNER_NAME = "Canopy Demo NGO"
SEASON = "2026-2027"

# Ant Forest's published prices (energy per unit); regions where its partners plant them
CATALOG: list[dict[str, Any]] = [
    {
        "kind": "tree",
        "name": "Saxaul",
        "species": "Haloxylon ammodendron",
        "cost_g": 17_900,
        "region": "Alxa League, Inner Mongolia",
        "budget": 10_000,
    },
    {
        "kind": "tree",
        "name": "Red willow",
        "species": "Tamarix chinensis",
        "cost_g": 22_400,
        "region": "Alxa League, Inner Mongolia",
        "budget": 5_000,
    },
    {
        "kind": "tree",
        "name": "Mongolian pine",
        "species": "Pinus sylvestris var. mongolica",
        "cost_g": 146_210,
        "region": "Zhangjiakou, Hebei",
        "budget": 2_000,
    },
    {
        "kind": "conservation",
        "name": "Laohegou protected area",
        "species": None,
        "cost_g": 2_390,
        "region": "Pingwu, Sichuan",
        "budget": 100_000,
    },
    {
        "kind": "virtual",
        "name": "Sapling badge",
        "species": None,
        "cost_g": 500,
        "region": "Everywhere",
        "budget": 1_000_000,
    },
    {
        "kind": "virtual",
        "name": "Desert rose sticker set",
        "species": None,
        "cost_g": 1_200,
        "region": "Everywhere",
        "budget": 1_000_000,
    },
    {
        "kind": "virtual",
        "name": "Forest guardian frame",
        "species": None,
        "cost_g": 5_000,
        "region": "Everywhere",
        "budget": 100_000,
    },
]


@dataclass
class DemoSeed:
    partner_id: uuid.UUID
    api_key: str | None  # only when the partner was created now
    webhook_secret: str | None
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


async def seed(
    session: AsyncSession,
    keys: Keys,
    settings: Settings,
    now: datetime,
    webhook_url: str | None = None,
) -> DemoSeed:
    """Create the demo partner (unless a partner of that name exists) and every catalog item
    it lacks. Two runs at once take turns."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('canopy:demo'))"))
    found = (
        await session.execute(
            text("SELECT id FROM partners WHERE name = :name ORDER BY created_at LIMIT 1"),
            {"name": PARTNER_NAME},
        )
    ).scalar()
    if found is None:
        created = await create_partner(
            session,
            keys,
            settings,
            PartnerCreate(name=PARTNER_NAME, scopes=[Scope.orders], webhook_url=webhook_url),
            now,
        )
        result = DemoSeed(created.id, created.api_key, created.webhook_secret)
    else:
        result = DemoSeed(found, None, None)
    repo = PlantingRepository(session)
    for item in CATALOG:
        if await repo.item_by_name(result.partner_id, item["name"]) is not None:
            result.existing.append(item["name"])
            continue
        await create_item(
            session,
            CatalogCreate(**item, partner_id=result.partner_id, status="available", season=SEASON),
            now,
        )
        result.created.append(item["name"])
    return result


def main(webhook_url: str | None = None) -> None:
    """Run :func:`seed` against the configured (or embedded) database, migrating it first,
    and print what happened — the partner's API key and webhook secret only when new."""
    settings = get_settings()
    services = resolve_services(settings)
    try:
        migrate.upgrade(services.database_url)

        async def run() -> DemoSeed:
            engine = create_engine(services.database_url, settings)
            try:
                async with create_sessionmaker(engine)() as session, session.begin():
                    return await seed(
                        session,
                        Keys.from_settings(settings),
                        settings,
                        SystemClock().now(),
                        webhook_url,
                    )
            finally:
                await engine.dispose()

        result = asyncio.run(run())
    finally:
        services.stop_embedded()
    if result.api_key:
        typer.echo(f"Created partner {PARTNER_NAME!r} ({result.partner_id}).")
        typer.echo(f"  API key (shown once):        {result.api_key}")
        typer.echo(f"  webhook secret (shown once): {result.webhook_secret}")
    else:
        typer.echo(
            f"Partner {PARTNER_NAME!r} ({result.partner_id}) already exists; its API key is not "
            "shown again (POST /admin/v1/partners/{id}/rotate-key issues a new one)."
        )
    if result.created:
        typer.echo(f"Catalog items added: {', '.join(result.created)}.")
    if result.existing:
        typer.echo(f"Catalog items already there: {', '.join(result.existing)}.")
