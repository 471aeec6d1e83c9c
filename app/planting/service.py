"""Plantings: redeeming energy for an item, and what a user sees of their plantings."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, NotFound, Unauthorized
from app.core.idempotency import IdempotencyKeyReused
from app.core.ids import parse_id
from app.core.pagination import split_page
from app.core.responses import dumps
from app.core.sql import Pg
from app.planting import repository
from app.planting.catalog import check_redeemable
from app.planting.certificates import CertificateData
from app.planting.errors import InsufficientEnergy, SoldOut
from app.planting.repository import PlantingRepository, Redemption
from app.planting.schemas import (
    HistoryEntry,
    Location,
    PartnerRef,
    PlantingIn,
    PlantingItem,
    PlantingOut,
    PlantingPage,
)

# an unparsable item id names no item; with a key it still runs, to tell reuse from 404
_NO_ITEM = uuid.UUID(int=0)
# a rerun answers a same-key race (the second sees the first's planting): twice is enough
_RUNS = 3


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


@dataclass(frozen=True, slots=True)
class Redeemed:
    """The 201 body of ``POST /v1/plantings`` (a :class:`PlantingCreated`), and whether it
    answers a retry (``Idempotent-Replayed``)."""

    body: bytes
    replayed: bool


async def redeem(
    pg: Pg,
    user_id: uuid.UUID,
    payload: PlantingIn,
    *,
    key: str | None,
    rules_version: int,
    now: datetime,
    key_ttl: timedelta,
) -> Redeemed:
    """Burn the energy, take the budget and issue the certificate — one statement, so if any
    step refuses (``insufficient_energy``, ``sold_out``, ``not_available``) nothing happened.
    Virtual items are ``completed`` at once; real ones wait ``reserved`` to be cut into an
    order for their partner.

    ``key`` (``Idempotency-Key``) is kept on the planting for ``key_ttl``: a retry with the
    same item and quantity is answered the first reply again, from the planting and its
    burn; another body is 422 ``idempotency_key_reused``. Refusals keep nothing, so a
    corrected retry may reuse the key."""
    if key is None:
        item_id = parse_id(payload.item_id, "catalog item")
    else:
        try:
            item_id = uuid.UUID(payload.item_id)
        except ValueError:
            item_id = _NO_ITEM
    planting_id = uuid.uuid4()
    for run in range(_RUNS):
        r = await repository.redeem(
            pg,
            planting_id=planting_id,
            user_id=user_id,
            item_id=item_id,
            quantity=payload.quantity,
            key=key,
            fresh_after=now - key_ttl,
            rules_version=rules_version,
            now=now,
        )
        if r is None:
            continue  # the same key planted concurrently and committed first: answer that
        if r.prior_id is not None:
            if (r.prior_item_id, r.prior_quantity) != (item_id, payload.quantity):
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used with a different request body"
                )
            return Redeemed(_reply(r, item_id, payload.quantity, prior=True), replayed=True)
        if r.id is not None:
            return Redeemed(_reply(r, item_id, payload.quantity, prior=False), replayed=False)
        if key is not None and r.raced and run < _RUNS - 1:
            continue  # refused after a concurrent request committed: was it this key's?
        _refuse(r, payload.quantity)
    raise Conflict("Another request with this Idempotency-Key is still running; retry")


def _reply(r: Redemption, item_id: uuid.UUID, quantity: int, *, prior: bool) -> bytes:
    """The :class:`PlantingCreated` body, straight from the statement's row. A replay shows
    the planting as its first reply did (first status, the balance after its burn)."""
    status = r.prior_status if prior else r.status
    created_at = r.prior_created_at if prior else r.created_at
    return dumps(
        {
            "id": r.prior_id if prior else r.id,
            "item": {
                "id": item_id,
                "kind": r.item_kind,
                "name": r.item_name,
                "species": r.item_species,
                "unit": r.item_unit,
                "region": r.item_region,
                "partner": {"id": r.partner_id, "name": r.partner_name},
            },
            "quantity": quantity,
            "cost_g": r.prior_cost_g if prior else r.cost_g,
            "status": status,
            "certificate_number": r.prior_certificate_number if prior else r.certificate_number,
            "created_at": created_at,
            "history": [{"status": status, "at": created_at}],
            "location": None,
            "planted_on": None,
            "balance_g": r.prior_balance_g if prior else r.balance_g,
        },
    )


def _refuse(r: Redemption, quantity: int) -> None:
    """Raise why the statement planted nothing: checked in the order the old steps refused
    (the item, then the balance); a budget taken by someone else meanwhile is ``sold_out``."""
    if not r.item_found:
        raise NotFound("No such catalog item")
    check_redeemable(
        {
            "status": r.item_status,
            "budget": r.item_budget,
            "taken": r.item_taken,
            "name": r.item_name,
            "unit": r.item_unit,
        },
        quantity,
    )
    if r.user_balance_g is None:  # the user row is gone (an erased user has no live login)
        raise Unauthorized("This login has ended; sign in again")
    cost = (r.item_cost_g or 0) * quantity
    if r.user_balance_g < cost:
        raise InsufficientEnergy(f"This needs {cost} g of energy")
    raise SoldOut(f"No {r.item_name} left this season")


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
