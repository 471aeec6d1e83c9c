"""Operators' planting orders: list by status, cut orders now, verify with an auditor, cancel
with a reason (the plantings' energy is refunded through the ledger)."""

from __future__ import annotations

import uuid
from typing import Any, get_args

from fastapi import Request
from starlette.responses import Response

from app.admin import audit
from app.console.forms import PostedForm, Problem, attempt, parse
from app.console.rendering import page, redirect
from app.console.routing import console_router
from app.console.session import ConsoleSession, Operator
from app.core.db import SessionDep
from app.core.deps import ClockDep, RegistryDep
from app.core.ids import parse_id
from app.core.pagination import decode_cursor
from app.planting import orders
from app.planting.schemas import CancelIn, OrderStatus, VerifyIn

router = console_router()

STATUSES: tuple[str, ...] = get_args(OrderStatus)
PAGE = 50
DONE = {
    "verified": "The order is verified: its plantings are verified and their owners told.",
    "cancelled": "The order is cancelled: its plantings' energy went back to their owners.",
}


@router.get("/console/orders")
async def order_list(
    request: Request,
    operator: Operator,
    db: SessionDep,
    status: str | None = None,
    cursor: str | None = None,
    cut: int | None = None,
) -> Response:
    shown = status if status in STATUSES else None
    details, next_cursor = await orders.list_orders(
        db, partner_id=None, status=shown, before_seq=decode_cursor(cursor), limit=PAGE
    )
    notice = None
    if cut is not None:
        notice = f"{cut} order{'s' if cut != 1 else ''} cut from the reserved plantings."
    return await page(
        request,
        "orders.html",
        session=operator,
        title="Orders",
        orders=orders.admin_orders(details),
        next_cursor=next_cursor,
        filter_status=shown,
        statuses=STATUSES,
        notice=notice,
    )


@router.post("/console/orders/cut")
async def cut_orders(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
) -> Response:
    """``POST /admin/v1/orders/batch``: every reserved planting into orders now."""
    now = clock.now()
    cut = await orders.cut_orders_now(db, now, registry.at(now).rules.planting)
    if cut:
        await audit.record(
            db,
            action="orders.cut",
            target="orders",
            summary=f"{len(cut)} order(s) cut now: "
            + ", ".join(f"{o.quantity} x {o.item.name} for {o.partner.name}" for o in cut)[:900],
            at=now,
            actor=operator.actor,
        )
    return redirect(f"/console/orders?cut={len(cut)}")


async def _order_page(
    request: Request,
    operator: ConsoleSession,
    db: SessionDep,
    order_id: uuid.UUID,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    defaults: dict[str, Any] = {"problem": None, "form": None, "values": {}, "notice": None}
    defaults.update(context)
    order = await orders.get_admin_order(db, order_id)
    return await page(
        request,
        "order.html",
        status=status,
        session=operator,
        title=f"Order {order.item.name}",
        order=order,
        **defaults,
    )


@router.get("/console/orders/{order_id}")
async def order_detail(
    request: Request, operator: Operator, db: SessionDep, order_id: str, done: str | None = None
) -> Response:
    return await _order_page(
        request, operator, db, parse_id(order_id, "order"), notice=DONE.get(done or "")
    )


@router.post("/console/orders/{order_id}/verify")
async def verify(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    clock: ClockDep,
    order_id: str,
) -> Response:
    """``POST /admin/v1/orders/{id}/verify``: an auditor confirms the planting."""
    oid = parse_id(order_id, "order")
    values = {"auditor": form.text("auditor"), "note": form.optional("note")}
    payload = parse(VerifyIn, values)
    now = clock.now()
    result = (
        payload
        if isinstance(payload, Problem)
        else await attempt(db, lambda: orders.verify(db, oid, payload.auditor, payload.note, now))
    )
    if isinstance(result, Problem):
        return await _order_page(
            request,
            operator,
            db,
            oid,
            status=result.status,
            problem=result,
            form="verify",
            values=values,
        )
    await audit.record(
        db,
        action="order.verified",
        target=f"order:{oid}",
        summary=f"verified by auditor {result.verified_by!r}",
        at=now,
        actor=operator.actor,
    )
    return redirect(f"/console/orders/{oid}?done=verified")


@router.post("/console/orders/{order_id}/cancel")
async def cancel(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    order_id: str,
) -> Response:
    """``POST /admin/v1/orders/{id}/cancel``: plantings cancelled, energy refunded."""
    oid = parse_id(order_id, "order")
    values = {"reason": form.text("reason")}
    payload = parse(CancelIn, values)
    now = clock.now()
    result = (
        payload
        if isinstance(payload, Problem)
        else await attempt(
            db, lambda: orders.cancel(db, oid, payload.reason, registry.at(now).version, now)
        )
    )
    if isinstance(result, Problem):
        return await _order_page(
            request,
            operator,
            db,
            oid,
            status=result.status,
            problem=result,
            form="cancel",
            values=values,
        )
    await audit.record(
        db,
        action="order.cancelled",
        target=f"order:{oid}",
        summary=f"cancelled ({result.quantity} x {result.item.name}): {values['reason']}",
        at=now,
        actor=operator.actor,
    )
    return redirect(f"/console/orders/{oid}?done=cancelled")
