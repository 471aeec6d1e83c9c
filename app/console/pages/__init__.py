"""Every console page, one module per area: sign-in, designers' rules, the operators' pages and
the NGO partners' portal."""

from __future__ import annotations

from fastapi import APIRouter

from app.console.pages import (
    catalog,
    dashboard,
    deliveries,
    fallback,
    orders,
    partners,
    portal,
    rules,
    signin,
    users,
)


def console_pages() -> APIRouter:
    router = APIRouter()
    for module in (signin, dashboard, rules, partners, orders, catalog, deliveries, users, portal):
        router.include_router(module.router)
    router.include_router(fallback.router)  # last: only what no page above answered
    return router
