"""Webhook deliveries, for operators (every partner's) and in the partners' portal (their own,
Svix-style): what was sent, when, what the endpoint answered, and a retry for a failed one."""

from __future__ import annotations

import uuid
from typing import Any, get_args

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.admin import audit
from app.console import queries
from app.console.forms import PostedForm
from app.console.rendering import page, redirect
from app.console.routing import console_router
from app.console.session import NgoPartner, Operator, PortalPartner
from app.core.db import SessionDep
from app.core.deps import ClockDep
from app.core.errors import NotFound
from app.core.ids import parse_id
from app.core.pagination import decode_cursor
from app.planting import webhooks
from app.planting.repository import PlantingRepository
from app.planting.schemas import DeliveryStatus

router = console_router()

STATUSES: tuple[str, ...] = get_args(DeliveryStatus)
PAGE = 50


def _status(value: str | None) -> str | None:
    return value if value in STATUSES else None


def _partner_filter(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


async def _detail(
    db: AsyncSession, delivery_id: uuid.UUID, partner_id: uuid.UUID | None
) -> dict[str, Any]:
    body = await queries.delivery_body(db, delivery_id, partner_id)
    row = await PlantingRepository(db).delivery(delivery_id) if body is not None else None
    if row is None:
        raise NotFound("No such webhook delivery")
    delivery = webhooks.delivery_out(row)
    return {
        "delivery": delivery,
        "body": body,
        "attempts": await queries.delivery_attempts(db, delivery_id),
        "endpoint": await queries.webhook_endpoint(db, delivery.partner.id),
    }


# --- operators --------------------------------------------------------------------------------


@router.get("/console/deliveries")
async def deliveries(
    request: Request,
    operator: Operator,
    db: SessionDep,
    status: str | None = None,
    partner: str | None = None,
    cursor: str | None = None,
) -> Response:
    shown = _status(status)
    partner_id = _partner_filter(partner)
    listing = await webhooks.list_deliveries(db, shown, partner_id, decode_cursor(cursor), PAGE)
    return await page(
        request,
        "deliveries.html",
        session=operator,
        title="Webhook deliveries",
        listing=listing,
        filter_status=shown,
        partner=str(partner_id) if partner_id else None,
        statuses=STATUSES,
        base="/console/deliveries",
        portal=False,
    )


@router.get("/console/deliveries/{delivery_id}")
async def delivery(
    request: Request,
    operator: Operator,
    db: SessionDep,
    delivery_id: str,
    retried: bool = False,
) -> Response:
    detail = await _detail(db, parse_id(delivery_id, "webhook delivery"), None)
    return await page(
        request,
        "delivery.html",
        session=operator,
        title="Webhook delivery",
        base="/console/deliveries",
        portal=False,
        notice=RETRIED if retried else None,
        **detail,
    )


RETRIED = "A new round of attempts starts now; the worker sends it within seconds."


@router.post("/console/deliveries/{delivery_id}/retry")
async def retry(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    clock: ClockDep,
    delivery_id: str,
) -> Response:
    """``POST /admin/v1/webhook-deliveries/{id}/retry``."""
    now = clock.now()
    retried = await webhooks.retry(db, parse_id(delivery_id, "webhook delivery"), now)
    await audit.record(
        db,
        action="webhook.retried",
        target=f"webhook-delivery:{retried.id}",
        summary=f"{retried.type} to {retried.partner.name!r} sent again",
        at=now,
        actor=operator.actor,
    )
    return redirect(f"/console/deliveries/{retried.id}?retried=1")


# --- the partners' portal ---------------------------------------------------------------------


@router.get("/console/portal/deliveries")
async def portal_deliveries(
    request: Request,
    partner: NgoPartner,
    db: SessionDep,
    status: str | None = None,
    cursor: str | None = None,
) -> Response:
    shown = _status(status)
    listing = await webhooks.list_deliveries(db, shown, partner.id, decode_cursor(cursor), PAGE)
    return await page(
        request,
        "deliveries.html",
        title="Webhook deliveries",
        partner_name=partner.name,
        listing=listing,
        filter_status=shown,
        partner=None,
        statuses=STATUSES,
        base="/console/portal/deliveries",
        portal=True,
        endpoint=await queries.webhook_endpoint(db, partner.id),
    )


@router.get("/console/portal/deliveries/{delivery_id}")
async def portal_delivery(
    request: Request,
    partner: NgoPartner,
    db: SessionDep,
    delivery_id: str,
    retried: bool = False,
) -> Response:
    detail = await _detail(db, parse_id(delivery_id, "webhook delivery"), partner.id)
    return await page(
        request,
        "delivery.html",
        title="Webhook delivery",
        partner_name=partner.name,
        base="/console/portal/deliveries",
        portal=True,
        notice=RETRIED if retried else None,
        **detail,
    )


@router.post("/console/portal/deliveries/{delivery_id}/retry")
async def portal_retry(
    request: Request,
    partner: NgoPartner,
    form: PostedForm,
    db: SessionDep,
    clock: ClockDep,
    delivery_id: str,
) -> Response:
    """A partner sends one of its own failed deliveries again (saying its endpoint is fixed);
    another partner's delivery is a 404, as in the API."""
    await _own(db, parse_id(delivery_id, "webhook delivery"), partner)
    now = clock.now()
    retried = await webhooks.retry(db, parse_id(delivery_id, "webhook delivery"), now)
    await audit.record(
        db,
        action="webhook.retried",
        target=f"webhook-delivery:{retried.id}",
        summary=f"{retried.type} sent again at the partner's request",
        at=now,
        actor=f"partner:{partner.id}",
    )
    return redirect(f"/console/portal/deliveries/{retried.id}?retried=1")


async def _own(db: AsyncSession, delivery_id: uuid.UUID, partner: PortalPartner) -> None:
    if await queries.delivery_body(db, delivery_id, partner.id) is None:
        raise NotFound("No such webhook delivery")
