"""The catalog: what energy can be redeemed for, and each item's seasonal budget."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound, ValidationFailed
from app.partners.schemas import Scope
from app.planting.errors import BudgetBelowTaken, NotAvailable, SoldOut
from app.planting.repository import PlantingRepository
from app.planting.schemas import (
    DEFAULT_UNITS,
    CatalogAdminOut,
    CatalogCreate,
    CatalogItemOut,
    CatalogPatch,
    PartnerRef,
)


def shown_status(status: str, budget: int, taken: int) -> str:
    """An available item whose budget is used up shows as ``sold_out``."""
    return "sold_out" if status == "available" and taken >= budget else status


def item_out(row: RowMapping) -> CatalogItemOut:
    return CatalogItemOut(
        id=row["id"],
        kind=row["kind"],
        name=row["name"],
        species=row["species"],
        cost_g=row["cost_g"],
        unit=row["unit"],
        region=row["region"],
        partner=PartnerRef(id=row["partner_id"], name=row["partner_name"]),
        status=shown_status(row["status"], row["budget"], row["taken"]),
        remaining=max(row["budget"] - row["taken"], 0),
        season=row["season"],
    )


def item_admin_out(row: RowMapping) -> CatalogAdminOut:
    return CatalogAdminOut(
        **item_out(row).model_dump(),
        budget=row["budget"],
        taken=row["taken"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def check_redeemable(row: Mapping[str, Any], quantity: int) -> None:
    """Raise the error a redemption of ``quantity`` units would meet, if any."""
    status = shown_status(row["status"], row["budget"], row["taken"])
    if status == "sold_out":
        raise SoldOut(f"No {row['name']} left this season")
    if status != "available":
        raise NotAvailable(f"{row['name']} is {status.replace('_', ' ')}")
    remaining = row["budget"] - row["taken"]
    if quantity > remaining:
        raise SoldOut(f"Only {remaining} {row['unit']} of {row['name']} left", remaining=remaining)


async def list_items(session: AsyncSession) -> list[CatalogItemOut]:
    return [item_out(r) for r in await PlantingRepository(session).items()]


async def _check_partner(
    repo: PlantingRepository, partner_id: uuid.UUID, kind: str
) -> dict[str, Any]:
    partner = await repo.partner_for_item(partner_id)
    if partner is None:
        raise ValidationFailed([{"loc": ["body", "partner_id"], "msg": "no such partner"}])
    if kind != "virtual" and Scope.orders.value not in partner["scopes"]:
        raise ValidationFailed(
            [
                {
                    "loc": ["body", "partner_id"],
                    "msg": "a partner that plants needs the 'orders' scope to receive orders",
                }
            ]
        )
    return dict(partner)


async def create_item(
    session: AsyncSession, payload: CatalogCreate, now: datetime
) -> CatalogAdminOut:
    """Add an item to the catalog (operators)."""
    repo = PlantingRepository(session)
    await _check_partner(repo, payload.partner_id, payload.kind)
    item_id = await repo.insert_item(
        {
            "id": uuid.uuid4(),
            "kind": payload.kind,
            "name": payload.name,
            "species": payload.species,
            "unit": payload.unit or DEFAULT_UNITS[payload.kind],
            "cost_g": payload.cost_g,
            "region": payload.region,
            "partner_id": payload.partner_id,
            "season": payload.season,
            "budget": payload.budget,
            "taken": 0,
            "status": payload.status,
            "created_at": now,
            "updated_at": now,
        }
    )
    row = await repo.item(item_id)
    assert row is not None
    return item_admin_out(row)


async def update_item(
    session: AsyncSession, item_id: uuid.UUID, patch: CatalogPatch, now: datetime
) -> CatalogAdminOut:
    """Change an item; a new price applies to later redemptions only. The budget cannot go
    below what was already redeemed (409 ``budget_below_taken``)."""
    repo = PlantingRepository(session)
    values = patch.model_dump(exclude_unset=True)
    for required in ("name", "cost_g", "unit", "region", "budget", "status"):
        if required in values and values[required] is None:
            raise ValidationFailed([{"loc": ["body", required], "msg": "may not be null"}])
    updated = await repo.update_item(item_id, values, now) if values else True
    row = await repo.item(item_id)
    if updated is None or row is None:
        raise NotFound("No such catalog item")
    if updated is False:
        raise BudgetBelowTaken(
            f"{row['taken']} {row['unit']} are already redeemed", taken=row["taken"]
        )
    return item_admin_out(row)
