"""The operators' dashboard: users, energy minted today, trees, the ledger check with its totals,
failed webhook deliveries, orders by status — and the audit log."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

import orjson
from fastapi import Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.console import queries
from app.console.forms import PostedForm
from app.console.rendering import page, redirect
from app.console.routing import console_router
from app.console.session import Operator
from app.core.db import SessionDep
from app.core.deps import ClockDep, RegistryDep
from app.core.pagination import decode_cursor, encode_cursor
from app.ledger import entries as ledger

router = console_router()

LEDGER_CHECK_KEY = "canopy:console:ledger-check"
# the check reads the whole ledger: the dashboard reruns it at most this often by itself
LEDGER_CHECK_MAX_AGE = timedelta(minutes=2)
AUDIT_PAGE = 50


async def _ledger_check(
    db: AsyncSession, redis: Redis, now: datetime, *, fresh: bool
) -> dict[str, Any]:
    """The last ledger check (Redis keeps it for the dashboard), rerun when asked or stale."""
    if not fresh:
        try:
            cached = await redis.get(LEDGER_CHECK_KEY)
        except Exception:  # Redis down: just run it
            cached = None
        if cached:
            kept: dict[str, Any] = orjson.loads(cached)
            at = datetime.fromisoformat(kept["at"])
            if now - at <= LEDGER_CHECK_MAX_AGE:
                kept["at"] = at
                return kept
    result = await ledger.check(db)
    kept = {"at": now.isoformat(), "result": result}
    with contextlib.suppress(Exception):  # the dashboard works without the cache
        await redis.set(LEDGER_CHECK_KEY, orjson.dumps(kept), ex=24 * 3600)
    kept["at"] = now
    return kept


@router.get("/console/dashboard")
async def dashboard(
    request: Request,
    operator: Operator,
    db: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    checked: bool = False,
) -> Response:
    now = clock.now()
    timezone = registry.at(now).rules.timezone
    numbers = await queries.dashboard(db, now, timezone)
    check = await _ledger_check(db, request.app.state.redis, now, fresh=False)
    return await page(
        request,
        "dashboard.html",
        session=operator,
        title="Dashboard",
        numbers=numbers,
        timezone=timezone,
        check=check,
        notice="The ledger check ran just now." if checked else None,
    )


@router.post("/console/ledger-check")
async def run_ledger_check(
    request: Request, operator: Operator, form: PostedForm, db: SessionDep, clock: ClockDep
) -> Response:
    await _ledger_check(db, request.app.state.redis, clock.now(), fresh=True)
    return redirect("/console/dashboard?checked=1")


@router.get("/console/audit")
async def audit_log(
    request: Request, operator: Operator, db: SessionDep, cursor: str | None = None
) -> Response:
    """Every admin action, newest first (the console's own under ``console:…``)."""
    rows = await queries.audit_page(db, decode_cursor(cursor), AUDIT_PAGE)
    next_cursor = encode_cursor(rows[AUDIT_PAGE - 1].id) if len(rows) > AUDIT_PAGE else None
    return await page(
        request,
        "audit.html",
        session=operator,
        title="Audit log",
        entries=rows[:AUDIT_PAGE],
        next_cursor=next_cursor,
    )
