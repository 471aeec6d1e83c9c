"""/v1/catalog, /v1/plantings, /v1/stats; partners' /partner/v1/orders; operators' catalog,
orders and webhook deliveries under /admin/v1."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import Response

from app.accounts.dependencies import CurrentPrincipal, CurrentUser
from app.admin.dependencies import AdminDep
from app.core.db import SessionDep
from app.core.deps import ClockDep, RegistryDep, SettingsDep
from app.core.idempotency import IdempotencyDep
from app.core.ids import parse_id
from app.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor
from app.core.ratelimit import limit_by_address
from app.core.sql import PgDep
from app.partners.dependencies import partner_with_scope
from app.partners.models import Partner
from app.partners.schemas import Scope
from app.planting import catalog, certificates, orders, service, webhooks
from app.planting import privacy as _privacy  # noqa: F401  (adds plantings to data exports)
from app.planting import stats as transparency
from app.planting.groves import service as groves
from app.planting.schemas import (
    AcknowledgeIn,
    CancelIn,
    CatalogAdminOut,
    CatalogCreate,
    CatalogList,
    CatalogPatch,
    DeliveryOut,
    DeliveryPage,
    DeliveryStatus,
    OrderAdminOut,
    OrderAdminPage,
    OrderOut,
    OrderPage,
    OrdersCut,
    OrderStatus,
    PlantingCreated,
    PlantingIn,
    PlantingOut,
    PlantingPage,
    PlantingStatus,
    ReportCreated,
    ReportIn,
    Stats,
    VerifyIn,
)

router = APIRouter(tags=["planting"])
partner_router = APIRouter(prefix="/partner/v1", tags=["partner"])
admin_router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[AdminDep])

OrdersPartner = Annotated[Partner, Depends(partner_with_scope(Scope.orders))]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
# POST /v1/plantings keeps its key on the planting (no IdempotencyDep: that costs round trips);
# the header is documented as on every other route that takes it
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=255,
        description="Retry-safe key: the same key and body replay the first response",
    ),
]
REPLAYED = {"Idempotent-Replayed": "true"}

SVG_HEADERS = {
    # opened on its own, the document may style itself and nothing else
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


# --- users -----------------------------------------------------------------------------------


@router.get("/v1/catalog", response_model=CatalogList)
async def get_catalog(user: CurrentUser, session: SessionDep) -> CatalogList:
    """Everything energy can be redeemed for, with what is left of each season's budget."""
    return CatalogList(items=await catalog.list_items(session))


@router.post(
    "/v1/plantings",
    status_code=201,
    response_model=PlantingCreated,
    responses={409: {"description": "insufficient_energy, sold_out or not_available"}},
)
async def create_planting(
    payload: PlantingIn,
    principal: CurrentPrincipal,
    pg: PgDep,
    registry: RegistryDep,
    clock: ClockDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Redeem energy for a catalog item: energy burned, budget taken, certificate issued."""
    now = clock.now()
    redeemed = await service.redeem(
        pg,
        principal.id,
        payload,
        key=idempotency_key,
        rules_version=registry.at(now).version,
        now=now,
        key_ttl=settings.idempotency_ttl,
    )
    headers = REPLAYED if redeemed.replayed else None
    return Response(redeemed.body, status_code=201, media_type="application/json", headers=headers)


@router.get("/v1/plantings", response_model=PlantingPage)
async def list_plantings(
    user: CurrentUser,
    session: SessionDep,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    status: PlantingStatus | None = None,
) -> PlantingPage:
    """Your plantings, newest first."""
    return await service.list_plantings(session, user.id, decode_cursor(cursor), limit, status)


@router.get("/v1/plantings/{planting_id}", response_model=PlantingOut)
async def get_planting(planting_id: str, user: CurrentUser, session: SessionDep) -> PlantingOut:
    """One of your plantings, with its history and, once planted, its location."""
    return service.planting_out(await service.get_planting(session, user.id, planting_id))


@router.get(
    "/v1/plantings/{planting_id}/certificate",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}, "description": "the certificate"}},
)
async def get_certificate(planting_id: str, user: CurrentUser, session: SessionDep) -> Response:
    """The planting's certificate, an SVG image."""
    row = await service.get_planting(session, user.id, planting_id)
    # a grove's planting names the grove and every member with their share
    data = await groves.certificate_of_planting(session, row["id"])
    svg = certificates.render(data or service.certificate_data(row))
    return Response(svg, media_type="image/svg+xml", headers=SVG_HEADERS)


@router.get("/v1/stats", response_model=Stats, dependencies=[Depends(limit_by_address("stats"))])
async def get_stats(
    request: Request, session: SessionDep, response: Response, clock: ClockDep
) -> Stats:
    """Public: users, energy minted, CO2e avoided, plantings by status, trees verified, and
    what each partner planted. Computed at most every 10 s per process and rate-limited per
    address (the rules' ``limits.stats``)."""
    response.headers["Cache-Control"] = f"public, max-age={transparency.CACHE_SECONDS}"
    cache = getattr(request.app.state, "stats_cache", None)
    if cache is None:
        cache = request.app.state.stats_cache = transparency.StatsCache()
    stats: Stats = await cache.get(session, clock.now())
    return stats


# --- NGO partners ----------------------------------------------------------------------------


@partner_router.get("/orders", response_model=OrderPage)
async def partner_list_orders(
    partner: OrdersPartner,
    session: SessionDep,
    status: OrderStatus | None = None,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> OrderPage:
    """Your orders, newest first."""
    details, next_cursor = await orders.list_orders(
        session,
        partner_id=partner.id,
        status=status,
        before_seq=decode_cursor(cursor),
        limit=limit,
    )
    return OrderPage(orders=orders.partner_orders(details), next_cursor=next_cursor)


@partner_router.get("/orders/{order_id}", response_model=OrderOut)
async def partner_get_order(order_id: str, partner: OrdersPartner, session: SessionDep) -> OrderOut:
    return await orders.get_partner_order(session, parse_id(order_id, "order"), partner.id)


@partner_router.post("/orders/{order_id}/acknowledge", response_model=OrderOut)
async def acknowledge_order(
    order_id: str,
    partner: OrdersPartner,
    session: SessionDep,
    clock: ClockDep,
    idem: IdempotencyDep,
    payload: AcknowledgeIn | None = None,
) -> Response:
    """You have the order (optionally with your own reference for it)."""
    order = parse_id(order_id, "order")

    async def produce() -> OrderOut:
        return await orders.acknowledge(
            session, partner.id, order, payload.external_ref if payload else None, clock.now()
        )

    return await idem.run(owner=f"partner:{partner.id}", status_code=200, produce=produce)


@partner_router.post("/orders/{order_id}/reports", status_code=201, response_model=ReportCreated)
async def report_planting(
    order_id: str,
    payload: ReportIn,
    partner: OrdersPartner,
    session: SessionDep,
    clock: ClockDep,
    idem: IdempotencyDep,
) -> Response:
    """Report planting progress; quantities add up, and the order is planted when they reach
    its quantity."""

    async def produce() -> ReportCreated:
        return await orders.report(
            session, partner.id, parse_id(order_id, "order"), payload, clock.now()
        )

    return await idem.run(owner=f"partner:{partner.id}", status_code=201, produce=produce)


# --- operators -------------------------------------------------------------------------------


@admin_router.post("/catalog", status_code=201, response_model=CatalogAdminOut)
async def create_catalog_item(
    payload: CatalogCreate, session: SessionDep, clock: ClockDep, idem: IdempotencyDep
) -> Response:
    async def produce() -> CatalogAdminOut:
        return await catalog.create_item(session, payload, clock.now())

    return await idem.run(owner="admin", status_code=201, produce=produce)


@admin_router.patch("/catalog/{item_id}", response_model=CatalogAdminOut)
async def update_catalog_item(
    item_id: str, patch: CatalogPatch, session: SessionDep, clock: ClockDep
) -> CatalogAdminOut:
    return await catalog.update_item(session, parse_id(item_id, "catalog item"), patch, clock.now())


@admin_router.post("/orders/batch", response_model=OrdersCut)
async def cut_orders(session: SessionDep, registry: RegistryDep, clock: ClockDep) -> OrdersCut:
    """Cut every reserved planting into orders now (the worker also does it by the rules'
    ``planting.batch_size`` and ``planting.batch_max_wait``)."""
    now = clock.now()
    return OrdersCut(
        orders=await orders.cut_orders_now(session, now, registry.at(now).rules.planting)
    )


@admin_router.get("/orders", response_model=OrderAdminPage)
async def admin_list_orders(
    session: SessionDep,
    status: OrderStatus | None = None,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> OrderAdminPage:
    details, next_cursor = await orders.list_orders(
        session, partner_id=None, status=status, before_seq=decode_cursor(cursor), limit=limit
    )
    return OrderAdminPage(orders=orders.admin_orders(details), next_cursor=next_cursor)


@admin_router.get("/orders/{order_id}", response_model=OrderAdminOut)
async def admin_get_order(order_id: str, session: SessionDep) -> OrderAdminOut:
    return await orders.get_admin_order(session, parse_id(order_id, "order"))


@admin_router.post("/orders/{order_id}/verify", response_model=OrderAdminOut)
async def verify_order(
    order_id: str, payload: VerifyIn, session: SessionDep, clock: ClockDep, idem: IdempotencyDep
) -> Response:
    """An auditor confirms the planting: the order and its plantings become ``verified``."""
    order = parse_id(order_id, "order")

    async def produce() -> OrderAdminOut:
        return await orders.verify(session, order, payload.auditor, payload.note, clock.now())

    return await idem.run(owner="admin", status_code=200, produce=produce)


@admin_router.post("/orders/{order_id}/cancel", response_model=OrderAdminOut)
async def cancel_order(
    order_id: str,
    payload: CancelIn,
    session: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    idem: IdempotencyDep,
) -> Response:
    """Cancel an order not yet planted: plantings ``cancelled``, energy refunded."""

    async def produce() -> OrderAdminOut:
        now = clock.now()
        return await orders.cancel(
            session, parse_id(order_id, "order"), payload.reason, registry.at(now).version, now
        )

    return await idem.run(owner="admin", status_code=200, produce=produce)


@admin_router.get("/webhook-deliveries", response_model=DeliveryPage)
async def list_deliveries(
    session: SessionDep,
    status: DeliveryStatus | None = None,
    partner_id: uuid.UUID | None = None,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> DeliveryPage:
    """Webhook deliveries, newest first; ``?status=failed`` for those given up on."""
    return await webhooks.list_deliveries(session, status, partner_id, decode_cursor(cursor), limit)


@admin_router.post("/webhook-deliveries/{delivery_id}/retry", response_model=DeliveryOut)
async def retry_delivery(delivery_id: str, session: SessionDep, clock: ClockDep) -> DeliveryOut:
    """Send a failed delivery again (a new round of attempts, starting now)."""
    return await webhooks.retry(session, parse_id(delivery_id, "webhook delivery"), clock.now())
