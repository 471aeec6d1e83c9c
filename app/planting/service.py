"""Plantings: redeeming energy for an item, and what a user sees of their plantings."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound
from app.core.ids import parse_id
from app.core.pagination import split_page
from app.ledger.transfers import debit_to_system
from app.planting.catalog import check_redeemable
from app.planting.certificates import CertificateData
from app.planting.errors import SoldOut
from app.planting.repository import PlantingRepository
from app.planting.schemas import (
    HistoryEntry,
    Location,
    PartnerRef,
    PlantingCreated,
    PlantingIn,
    PlantingItem,
    PlantingOut,
    PlantingPage,
)
from app.rules.registry import RulesRegistry

BURNED_ACCOUNT = "system:burned"


def planting_ref(planting_id: uuid.UUID) -> str:
    """The ledger ``ref`` of a planting's burn and refund."""
    return f"planting:{planting_id}"


def planting_out(row: RowMapping) -> PlantingOut:
    location = None
    if row["location_lat"] is not None and row["location_lon"] is not None:
        location = Location(lat=row["location_lat"], lon=row["location_lon"])
    return PlantingOut(
        id=row["id"],
        item=PlantingItem(
            id=row["item_id"],
            kind=row["item_kind"],
            name=row["item_name"],
            species=row["item_species"],
            unit=row["item_unit"],
            region=row["item_region"],
            partner=PartnerRef(id=row["partner_id"], name=row["partner_name"]),
        ),
        quantity=row["quantity"],
        cost_g=row["cost_g"],
        status=row["status"],
        certificate_number=row["certificate_number"],
        created_at=row["created_at"],
        history=[HistoryEntry.model_validate(h) for h in row["history"]],
        location=location,
        planted_on=row["planted_on"],
    )


async def redeem(
    session: AsyncSession,
    user_id: uuid.UUID,
    payload: PlantingIn,
    registry: RulesRegistry,
    now: datetime,
) -> PlantingCreated:
    """Burn the energy, take the budget and issue the certificate, all in the caller's
    transaction: if any step refuses (``insufficient_energy``, ``sold_out``,
    ``not_available``) nothing happened. Virtual items are ``completed`` at once; real ones
    wait ``reserved`` to be cut into an order for their partner.

    The balance is debited first (the user's own row), the budget taken last (the item's row,
    shared by everyone redeeming it), so the hot row is locked for the shortest time."""
    repo = PlantingRepository(session)
    item_id = parse_id(payload.item_id, "catalog item")
    item = await repo.item(item_id)
    if item is None:
        raise NotFound("No such catalog item")
    check_redeemable(item, payload.quantity)  # fail fast; the budget is taken atomically below
    planting_id = uuid.uuid4()
    cost = item["cost_g"] * payload.quantity
    version = registry.at(now).version
    balance = await debit_to_system(
        session,
        user_id=user_id,
        amount_g=cost,
        account=BURNED_ACCOUNT,
        reason="burn",
        ref=planting_ref(planting_id),
        rules_version=version,
        now=now,
    )
    if not await repo.take_budget(item_id, payload.quantity, now):
        # someone took the last units (or an operator closed the item) since the check above
        check_redeemable(await repo.item(item_id) or item, payload.quantity)
        raise SoldOut(f"No {item['name']} left this season")
    await repo.insert_planting(
        {
            "id": planting_id,
            "user_id": user_id,
            "item_id": item_id,
            "partner_id": item["partner_id"],
            "kind": item["kind"],
            "quantity": payload.quantity,
            "cost_g": cost,
            "status": "completed" if item["kind"] == "virtual" else "reserved",
            "rules_version": version,
            "now": now,
        }
    )
    row = await repo.planting(user_id, planting_id)
    assert row is not None
    return PlantingCreated(**planting_out(row).model_dump(), balance_g=balance)


async def get_planting(session: AsyncSession, user_id: uuid.UUID, planting_id: str) -> RowMapping:
    """The caller's planting (with the owner's names, for the certificate); another user's or
    an unknown one is 404."""
    row = await PlantingRepository(session).planting(user_id, parse_id(planting_id, "planting"))
    if row is None:
        raise NotFound("No such planting")
    return row


async def list_plantings(
    session: AsyncSession,
    user_id: uuid.UUID,
    before_seq: int | None,
    limit: int,
    status: str | None = None,
) -> PlantingPage:
    rows = await PlantingRepository(session).plantings(user_id, before_seq, limit, status)
    page, next_cursor = split_page(rows, limit, lambda r: r["seq"])
    return PlantingPage(
        plantings=[planting_out(r) for r in page],
        next_cursor=next_cursor,
    )


def certificate_data(row: RowMapping) -> CertificateData:
    """What the certificate of a planting row (from :func:`get_planting`) shows."""
    return CertificateData(
        number=row["certificate_number"],
        holder=row["display_name"] or row["handle"] or "A Canopy member",
        kind=row["item_kind"],
        item=row["item_name"],
        species=row["item_species"],
        unit=row["item_unit"],
        quantity=row["quantity"],
        region=row["item_region"],
        partner=row["partner_name"],
        cost_g=row["cost_g"],
        issued=row["created_at"],
        status=row["status"],
        planted_on=row["planted_on"],
        lat=row["location_lat"],
        lon=row["location_lon"],
    )


async def count_trees(session: AsyncSession, user_id: uuid.UUID) -> int:
    """Trees the user has redeemed and not had cancelled (``trees.count`` of the forest)."""
    return await PlantingRepository(session).count_trees(user_id)
