"""Orders: reserved plantings cut into orders per partner and item, then the partner's
acknowledgement and reports, the auditor's verification, or cancellation with refunds.

Every change of an order happens under its row lock, together with its plantings, the users'
feed items and the partner's webhook event (the outbox), in one transaction.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin import audit
from app.core.errors import NotFound, ValidationFailed
from app.core.pagination import split_page
from app.game.feed.service import PLANTING_UPDATE, NewItem, add_items
from app.planting import webhooks
from app.planting.errors import OrderCancelled, OrderNotCancellable, OrderNotPlanted, OverReported
from app.planting.repository import PlantingRepository
from app.planting.schemas import (
    Certificate,
    Location,
    OrderAdminOut,
    OrderItem,
    OrderOut,
    OrderSummary,
    PartnerRef,
    ReportCreated,
    ReportIn,
    ReportOut,
)
from app.planting.service import planting_ref
from app.rules.schema import PlantingRules

# a report may be dated at most this far ahead of the server's UTC date (partners' time zones)
PLANTED_ON_SKEW = timedelta(days=1)


# --- reading ---------------------------------------------------------------------------------


def _report_out(row: RowMapping) -> ReportOut:
    return ReportOut(
        id=row["id"],
        planted_quantity=row["planted_quantity"],
        planted_on=row["planted_on"],
        location=Location(lat=row["lat"], lon=row["lon"]),
        evidence_urls=list(row["evidence_urls"] or []),
        note=row["note"],
        created_at=row["created_at"],
    )


def _order_fields(
    row: RowMapping, certificates: list[Certificate], reports: list[ReportOut]
) -> dict[str, Any]:
    return {
        "id": row["id"],
        "status": row["status"],
        "item": OrderItem(
            id=row["item_id"],
            name=row["item_name"],
            species=row["item_species"],
            region=row["item_region"],
            kind=row["item_kind"],
            unit=row["item_unit"],
        ),
        "quantity": row["quantity"],
        "certificates": certificates,
        "created_at": row["created_at"],
        "acknowledged_at": row["acknowledged_at"],
        "planted_quantity": row["planted_quantity"],
        "reports": reports,
        "external_ref": row["external_ref"],
        "planted_at": row["planted_at"],
        "verified_at": row["verified_at"],
        "verified_by": row["verified_by"],
        "cancelled_at": row["cancelled_at"],
        "cancel_reason": row["cancel_reason"],
    }


async def _details(
    repo: PlantingRepository, rows: Sequence[RowMapping]
) -> list[tuple[RowMapping, list[Certificate], list[ReportOut]]]:
    """Orders with their certificates and reports: two queries for any number of orders."""
    ids = [r["id"] for r in rows]
    certificates: dict[uuid.UUID, list[Certificate]] = defaultdict(list)
    reports: dict[uuid.UUID, list[ReportOut]] = defaultdict(list)
    if ids:
        for c in await repo.certificates(ids):
            certificates[c["order_id"]].append(
                Certificate(number=c["certificate_number"], quantity=c["quantity"])
            )
        for r in await repo.reports(ids):
            reports[r["order_id"]].append(_report_out(r))
    return [(r, certificates[r["id"]], reports[r["id"]]) for r in rows]


async def _order_out(repo: PlantingRepository, row: RowMapping) -> OrderOut:
    [(order, certificates, reports)] = await _details(repo, [row])
    return OrderOut(**_order_fields(order, certificates, reports))


async def _order_admin_out(repo: PlantingRepository, row: RowMapping) -> OrderAdminOut:
    [(order, certificates, reports)] = await _details(repo, [row])
    return _admin(order, certificates, reports)


def _admin(
    row: RowMapping, certificates: list[Certificate], reports: list[ReportOut]
) -> OrderAdminOut:
    return OrderAdminOut(
        **_order_fields(row, certificates, reports),
        partner=PartnerRef(id=row["partner_id"], name=row["partner_name"]),
        verification_note=row["verification_note"],
    )


async def list_orders(
    session: AsyncSession,
    *,
    partner_id: uuid.UUID | None,
    status: str | None,
    before_seq: int | None,
    limit: int,
) -> tuple[list[tuple[RowMapping, list[Certificate], list[ReportOut]]], str | None]:
    """A page of orders (one partner's, or all for operators), newest first."""
    repo = PlantingRepository(session)
    rows = await repo.orders(
        partner_id=partner_id, status=status, before_seq=before_seq, limit=limit
    )
    page, cursor = split_page(rows, limit, lambda r: r["seq"])
    return await _details(repo, page), cursor


def partner_orders(
    details: list[tuple[RowMapping, list[Certificate], list[ReportOut]]],
) -> list[OrderOut]:
    return [OrderOut(**_order_fields(*d)) for d in details]


def admin_orders(
    details: list[tuple[RowMapping, list[Certificate], list[ReportOut]]],
) -> list[OrderAdminOut]:
    return [_admin(*d) for d in details]


async def get_partner_order(
    session: AsyncSession, order_id: uuid.UUID, partner_id: uuid.UUID
) -> OrderOut:
    """A partner's own order; another partner's is 404."""
    repo = PlantingRepository(session)
    row = await repo.order(order_id, partner_id)
    if row is None:
        raise NotFound("No such order")
    return await _order_out(repo, row)


async def get_admin_order(session: AsyncSession, order_id: uuid.UUID) -> OrderAdminOut:
    repo = PlantingRepository(session)
    row = await repo.order(order_id)
    if row is None:
        raise NotFound("No such order")
    return await _order_admin_out(repo, row)


# --- cutting orders --------------------------------------------------------------------------


def _chunks(
    rows: Sequence[RowMapping], batch_size: int, waited_since: datetime, force: bool
) -> Iterator[list[RowMapping]]:
    """Consecutive plantings (oldest first) grouped into orders of at least ``batch_size``
    units; what is left makes a smaller order only if its oldest has waited long enough (or
    an operator forces it)."""
    chunk: list[RowMapping] = []
    units = 0
    for row in rows:
        chunk.append(row)
        units += row["quantity"]
        if units >= batch_size:
            yield chunk
            chunk, units = [], 0
    if chunk and (force or chunk[0]["created_at"] <= waited_since):
        yield chunk


async def cut_orders(
    session: AsyncSession, now: datetime, rules: PlantingRules, *, force: bool = False
) -> list[uuid.UUID]:
    """Cut reserved plantings into orders per partner and item when ``batch_size`` units are
    waiting or the oldest has waited ``batch_max_wait`` (``force``: everything, now). Each
    order and its ``order.created`` event are written in this transaction. Runs one at a
    time across processes; a worker finding another run in progress does nothing."""
    repo = PlantingRepository(session)
    if not await repo.batching_lock(wait=force):
        return []
    waited_since = now - rules.batch_max_wait
    created: list[uuid.UUID] = []
    for group in await repo.reserved_groups():
        if not (force or group["units"] >= rules.batch_size or group["oldest"] <= waited_since):
            continue
        rows = await repo.lock_reserved(group["partner_id"], group["item_id"])
        for chunk in _chunks(rows, rules.batch_size, waited_since, force):
            order_id = uuid.uuid4()
            await repo.insert_order(
                {
                    "id": order_id,
                    "partner_id": group["partner_id"],
                    "item_id": group["item_id"],
                    "quantity": sum(r["quantity"] for r in chunk),
                    "now": now,
                }
            )
            await repo.assign_to_order([r["id"] for r in chunk], order_id, now)
            await _notify_partner(repo, order_id, "order.created", now)
            created.append(order_id)
    return created


async def cut_orders_now(
    session: AsyncSession, now: datetime, rules: PlantingRules
) -> list[OrderAdminOut]:
    """``POST /admin/v1/orders/batch``: every reserved planting into orders now."""
    repo = PlantingRepository(session)
    ids = await cut_orders(session, now, rules, force=True)
    rows = [r for r in [await repo.order(i) for i in ids] if r is not None]
    return admin_orders(await _details(repo, rows))


async def _notify_partner(
    repo: PlantingRepository, order_id: uuid.UUID, event: str, now: datetime
) -> OrderOut:
    row = await repo.order(order_id)
    assert row is not None
    order = await _order_out(repo, row)
    await webhooks.enqueue(repo, row["partner_id"], event, order.model_dump(mode="json"), now)
    return order


# --- the partner's side ----------------------------------------------------------------------


async def _locked(
    repo: PlantingRepository, order_id: uuid.UUID, partner_id: uuid.UUID | None
) -> RowMapping:
    row = await repo.order(order_id, partner_id, lock=True)
    if row is None:
        raise NotFound("No such order")
    return row


async def _acknowledge(
    repo: PlantingRepository, order_id: uuid.UUID, now: datetime, external_ref: str | None
) -> None:
    await repo.update_order(
        order_id, now, status="acknowledged", acknowledged_at=now, external_ref=external_ref
    )
    await repo.move_plantings(order_id, ["ordered"], "acknowledged", now)


async def acknowledge(
    session: AsyncSession,
    partner_id: uuid.UUID,
    order_id: uuid.UUID,
    external_ref: str | None,
    now: datetime,
) -> OrderOut:
    """The partner has the order. Acknowledging again changes nothing (but may set the
    partner's own reference); a cancelled order cannot be acknowledged."""
    repo = PlantingRepository(session)
    row = await _locked(repo, order_id, partner_id)
    if row["status"] == "cancelled":
        raise OrderCancelled()
    if row["status"] == "open":
        await _acknowledge(repo, order_id, now, external_ref)
    elif external_ref is not None and external_ref != row["external_ref"]:
        await repo.update_order(order_id, now, external_ref=external_ref)
    fresh = await repo.order(order_id)
    assert fresh is not None
    return await _order_out(repo, fresh)


def _places(
    plantings: Sequence[RowMapping], reports: Sequence[RowMapping]
) -> list[tuple[uuid.UUID, float, float, date]]:
    """Where and when each planting went into the ground: units are planted in report order
    and plantings filled oldest first, so a planting's place is that of the report that
    planted its last unit."""
    places = []
    report_iter = iter(reports)
    report, left = None, 0
    for planting in plantings:
        need = planting["quantity"]
        while need > 0:
            if left == 0:
                report = next(report_iter)
                left = report["planted_quantity"]
            used = min(need, left)
            need, left = need - used, left - used
        assert report is not None
        places.append((planting["id"], report["lat"], report["lon"], report["planted_on"]))
    return places


async def report(
    session: AsyncSession,
    partner_id: uuid.UUID,
    order_id: uuid.UUID,
    payload: ReportIn,
    now: datetime,
) -> ReportCreated:
    """Record planting progress; quantities add up. More than ordered → ``over_reported``.
    A report on an open order acknowledges it. When everything is planted, the order and its
    plantings become ``planted``, each planting with its location, and each user is told."""
    repo = PlantingRepository(session)
    row = await _locked(repo, order_id, partner_id)
    if row["status"] == "cancelled":
        raise OrderCancelled()
    left = row["quantity"] - row["planted_quantity"]
    if payload.planted_quantity > left:
        raise OverReported(
            f"This order has {left} {row['item_unit']} left to report", remaining=left
        )
    if payload.planted_on > (now + PLANTED_ON_SKEW).date():
        raise ValidationFailed([{"loc": ["body", "planted_on"], "msg": "is in the future"}])
    if row["status"] == "open":
        await _acknowledge(repo, order_id, now, None)
    report_id = uuid.uuid4()
    await repo.insert_report(
        {
            "id": report_id,
            "order_id": order_id,
            "partner_id": partner_id,
            "planted_quantity": payload.planted_quantity,
            "planted_on": payload.planted_on,
            "lat": payload.location.lat,
            "lon": payload.location.lon,
            "evidence_urls": list(payload.evidence_urls),
            "note": payload.note,
            "created_at": now,
        }
    )
    planted = row["planted_quantity"] + payload.planted_quantity
    if planted == row["quantity"]:
        await repo.update_order(
            order_id, now, planted_quantity=planted, status="planted", planted_at=now
        )
        places = _places(await repo.order_plantings(order_id), await repo.reports([order_id]))
        moved = await repo.plant(places, now)
        await add_items(session, _feed(moved, "planted", row, now))
    else:
        await repo.update_order(order_id, now, planted_quantity=planted)
    fresh = await repo.order(order_id)
    assert fresh is not None
    return ReportCreated(
        id=report_id,
        planted_quantity=payload.planted_quantity,
        planted_on=payload.planted_on,
        location=payload.location,
        evidence_urls=list(payload.evidence_urls),
        note=payload.note,
        created_at=now,
        order=OrderSummary(
            id=order_id,
            status=fresh["status"],
            quantity=fresh["quantity"],
            planted_quantity=fresh["planted_quantity"],
        ),
    )


def _feed(
    plantings: Sequence[RowMapping],
    status: str,
    order: RowMapping,
    now: datetime,
    extra: dict[str, Any] | None = None,
    amount: bool = False,
) -> list[NewItem]:
    """One ``planting_update`` per planting, for its owner."""
    items = []
    for p in plantings:
        data: dict[str, Any] = {
            "planting_id": str(p["id"]),
            "status": status,
            "item": order["item_name"],
            "species": order["item_species"],
            "quantity": p["quantity"],
            "certificate_number": p["certificate_number"],
            **(extra or {}),
        }
        if p.get("location_lat") is not None:
            data["location"] = {"lat": p["location_lat"], "lon": p["location_lon"]}
            data["planted_on"] = p["planted_on"].isoformat()
        items.append(
            NewItem(
                user_id=p["user_id"],
                type=PLANTING_UPDATE,
                at=now,
                amount_g=p["cost_g"] if amount else None,
                ref=planting_ref(p["id"]),
                data=data,
            )
        )
    return items


# --- operators -------------------------------------------------------------------------------


async def verify(
    session: AsyncSession, order_id: uuid.UUID, auditor: str, note: str | None, now: datetime
) -> OrderAdminOut:
    """An auditor confirms a planted order: it and its plantings become ``verified``, users
    are told, the partner gets ``order.verified``. Verifying again changes nothing."""
    repo = PlantingRepository(session)
    row = await _locked(repo, order_id, None)
    if row["status"] == "planted":
        await repo.update_order(
            order_id,
            now,
            status="verified",
            verified_at=now,
            verified_by=auditor,
            verification_note=note,
        )
        moved = await repo.move_plantings(order_id, ["planted"], "verified", now)
        await add_items(session, _feed(moved, "verified", row, now, {"auditor": auditor}))
        await _notify_partner(repo, order_id, "order.verified", now)
        await audit.record(
            session,
            action="order.verified",
            target=f"order:{order_id}",
            summary=f"{len(moved)} plantings verified by {auditor!r}",
            at=now,
        )
    elif row["status"] != "verified":
        raise OrderNotPlanted(f"This order is {row['status']}")
    fresh = await repo.order(order_id)
    assert fresh is not None
    return await _order_admin_out(repo, fresh)


async def cancel(
    session: AsyncSession, order_id: uuid.UUID, reason: str, rules_version: int, now: datetime
) -> OrderAdminOut:
    """Cancel an order that is not planted yet: its plantings become ``cancelled`` and their
    energy goes back to their owners through the ledger (``refund`` from ``system:burned``),
    users are told, the partner gets ``order.cancelled``. Cancelling again changes nothing.
    The item's budget is not given back: the partner may not be able to plant it."""
    repo = PlantingRepository(session)
    row = await _locked(repo, order_id, None)
    if row["status"] in ("open", "acknowledged"):
        await repo.update_order(
            order_id, now, status="cancelled", cancelled_at=now, cancel_reason=reason
        )
        await repo.lock_order_users(order_id)
        refunded = await repo.cancel_and_refund(order_id, now, rules_version)
        await add_items(
            session, _feed(refunded, "cancelled", row, now, {"reason": reason}, amount=True)
        )
        await _notify_partner(repo, order_id, "order.cancelled", now)
        await audit.record(
            session,
            action="order.cancelled",
            target=f"order:{order_id}",
            summary=f"{len(refunded)} plantings cancelled and refunded; reason: {reason!r}",
            at=now,
        )
    elif row["status"] != "cancelled":
        raise OrderNotCancellable(f"This order is already {row['status']}")
    fresh = await repo.order(order_id)
    assert fresh is not None
    return await _order_admin_out(repo, fresh)
