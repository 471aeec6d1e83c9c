"""The NGO partners' portal: their orders (new, acknowledged, planted, verified) with quantities
and species, acknowledging one, and reporting planting — through the same services and checks
as ``/partner/v1/orders`` (another partner's order is a 404; ``over_reported`` is refused)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from starlette.responses import Response

from app.console.forms import Posted, PostedForm, Problem, attempt, once_only, parse
from app.console.rendering import page, redirect
from app.console.routing import console_router
from app.console.session import NgoPartner, PortalPartner
from app.core.db import SessionDep
from app.core.deps import ClockDep
from app.core.errors import Forbidden
from app.core.ids import parse_id
from app.core.pagination import decode_cursor
from app.partners.schemas import Scope
from app.planting import orders
from app.planting.schemas import AcknowledgeIn, ReportIn

router = console_router()

PAGE = 50
# the portal's tabs: what a partner calls each status
TABS = [
    ("open", "new"),
    ("acknowledged", "acknowledged"),
    ("planted", "planted"),
    ("verified", "verified"),
    ("cancelled", "cancelled"),
]
REPORT_FIELDS = ("planted_quantity", "planted_on", "location", "evidence_urls", "note")
DONE = {
    "acknowledged": "Acknowledged: Canopy knows you have this order.",
    "reported": "Planting reported. Thank you!",
}


def _orders_scope(partner: PortalPartner) -> None:
    if Scope.orders.value not in partner.scopes:
        raise Forbidden(f"This API key lacks the '{Scope.orders.value}' scope")


@router.get("/console/portal/orders")
async def portal_orders(
    request: Request,
    partner: NgoPartner,
    db: SessionDep,
    status: str | None = None,
    cursor: str | None = None,
) -> Response:
    _orders_scope(partner)
    shown = status if status in dict(TABS) else None
    details, next_cursor = await orders.list_orders(
        db, partner_id=partner.id, status=shown, before_seq=decode_cursor(cursor), limit=PAGE
    )
    return await page(
        request,
        "portal_orders.html",
        title="Your orders",
        partner_name=partner.name,
        orders=orders.partner_orders(details),
        next_cursor=next_cursor,
        filter_status=shown,
        tabs=TABS,
    )


async def _order_page(
    request: Request,
    partner: PortalPartner,
    db: SessionDep,
    clock: ClockDep,
    order_id: uuid.UUID,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    defaults: dict[str, Any] = {"problem": None, "form": None, "values": {}, "notice": None}
    defaults.update(context)
    order = await orders.get_partner_order(db, order_id, partner.id)
    return await page(
        request,
        "portal_order.html",
        status=status,
        title=f"Order {order.item.name}",
        partner_name=partner.name,
        order=order,
        today=clock.now().date().isoformat(),
        report_fields=REPORT_FIELDS,
        **defaults,
    )


@router.get("/console/portal/orders/{order_id}")
async def portal_order(
    request: Request,
    partner: NgoPartner,
    db: SessionDep,
    clock: ClockDep,
    order_id: str,
    done: str | None = None,
) -> Response:
    _orders_scope(partner)
    return await _order_page(
        request, partner, db, clock, parse_id(order_id, "order"), notice=DONE.get(done or "")
    )


@router.post("/console/portal/orders/{order_id}/acknowledge")
async def acknowledge(
    request: Request,
    partner: NgoPartner,
    form: PostedForm,
    db: SessionDep,
    clock: ClockDep,
    order_id: str,
) -> Response:
    """``POST /partner/v1/orders/{id}/acknowledge``."""
    _orders_scope(partner)
    oid = parse_id(order_id, "order")
    values = {"external_ref": form.optional("external_ref")}
    payload = parse(AcknowledgeIn, values)
    result = (
        payload
        if isinstance(payload, Problem)
        else await attempt(
            db,
            lambda: orders.acknowledge(db, partner.id, oid, payload.external_ref, clock.now()),
        )
    )
    if isinstance(result, Problem):
        return await _order_page(
            request,
            partner,
            db,
            clock,
            oid,
            status=result.status,
            problem=result,
            form="acknowledge",
            values=values,
        )
    return redirect(f"/console/portal/orders/{oid}?done=acknowledged")


def _report_payload(form: Posted) -> dict[str, Any]:
    urls = [u.strip() for u in form.text("evidence_urls").splitlines() if u.strip()]
    return {
        "planted_quantity": form.text("planted_quantity"),
        "planted_on": form.text("planted_on"),
        "location": {"lat": form.text("location.lat"), "lon": form.text("location.lon")},
        "evidence_urls": urls,
        "note": form.optional("note"),
    }


@router.post("/console/portal/orders/{order_id}/reports")
async def report(
    request: Request,
    partner: NgoPartner,
    form: PostedForm,
    db: SessionDep,
    clock: ClockDep,
    order_id: str,
) -> Response:
    """``POST /partner/v1/orders/{id}/reports``: quantities add up; more than ordered is
    ``over_reported``, shown next to the quantity."""
    _orders_scope(partner)
    await once_only(request, form)
    oid = parse_id(order_id, "order")
    payload = parse(ReportIn, _report_payload(form))
    result = (
        payload
        if isinstance(payload, Problem)
        else await attempt(
            db,
            lambda: orders.report(db, partner.id, oid, payload, clock.now()),
            code_fields={"over_reported": "planted_quantity"},
        )
    )
    if isinstance(result, Problem):
        return await _order_page(
            request,
            partner,
            db,
            clock,
            oid,
            status=result.status,
            problem=result,
            form="report",
            values=form.values(),
        )
    return redirect(f"/console/portal/orders/{oid}?done=reported")
