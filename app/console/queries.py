"""Read-only queries the console needs and no domain service offers yet: the dashboard's counts,
rules versions with their text, a webhook delivery's body and attempts, a user's profile, the
audit log. Nothing here writes; every change goes through the domains' services."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def _rows(db: AsyncSession, sql: str, **params: Any) -> list[Any]:
    return list(await db.execute(text(sql), params))


# --- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionRow:
    version: int
    sha256: str
    label: str
    effective_from: datetime
    created_at: datetime
    source: str  # who published it: the rules file at start, the API (and console), the CLI


async def rules_versions(db: AsyncSession) -> list[VersionRow]:
    """Every published version, newest first."""
    rows = await _rows(
        db,
        "SELECT version, sha256, label, effective_from, created_at, source FROM rules_versions "
        "ORDER BY version DESC",
    )
    return [VersionRow(**r._mapping) for r in rows]


async def rules_text(db: AsyncSession, version: int) -> str | None:
    row = await db.execute(
        text("SELECT text FROM rules_versions WHERE version = :v"), {"v": version}
    )
    found: str | None = row.scalar()
    return found


# --- the dashboard ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    users: int
    minted_today_g: int
    today_starts: datetime
    trees_planted: int
    trees_verified: int
    failed_deliveries: int
    pending_deliveries: int
    orders: dict[str, int]
    reserved_plantings: int


ORDER_STATUSES = ("open", "acknowledged", "planted", "verified", "cancelled")


async def dashboard(db: AsyncSession, now: datetime, timezone: str) -> Dashboard:
    """The day is the rules' day (midnight in the rules' time zone)."""
    local = now.astimezone(ZoneInfo(timezone))
    today_starts = local.replace(hour=0, minute=0, second=0, microsecond=0)
    [totals] = await _rows(
        db,
        "SELECT (SELECT count(*) FROM users WHERE erased_at IS NULL) AS users, "
        "(SELECT coalesce(-sum(amount_g), 0) FROM ledger_entries "
        " WHERE account = 'system:minted' AND at >= :since) AS minted_today_g, "
        "(SELECT coalesce(sum(quantity), 0) FROM plantings "
        " WHERE kind = 'tree' AND status IN ('planted', 'verified')) AS trees_planted, "
        "(SELECT coalesce(sum(quantity), 0) FROM plantings "
        " WHERE kind = 'tree' AND status = 'verified') AS trees_verified, "
        "(SELECT count(*) FROM webhook_deliveries WHERE status = 'failed') AS failed, "
        "(SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') AS pending, "
        "(SELECT count(*) FROM plantings WHERE status = 'reserved') AS reserved",
        since=today_starts,
    )
    by_status = {s: 0 for s in ORDER_STATUSES}
    for status, count in await _rows(
        db, "SELECT status, count(*) FROM planting_orders GROUP BY status"
    ):
        by_status[status] = int(count)
    return Dashboard(
        users=int(totals.users),
        minted_today_g=int(totals.minted_today_g),
        today_starts=today_starts,
        trees_planted=int(totals.trees_planted),
        trees_verified=int(totals.trees_verified),
        failed_deliveries=int(totals.failed),
        pending_deliveries=int(totals.pending),
        orders=by_status,
        reserved_plantings=int(totals.reserved),
    )


# --- webhook deliveries -----------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    number: int
    url: str | None
    started_at: datetime
    finished_at: datetime | None
    status_code: int | None
    error: str | None
    duration_ms: int | None


async def delivery_body(
    db: AsyncSession, delivery_id: uuid.UUID, partner_id: uuid.UUID | None = None
) -> str | None:
    """The exact body every attempt sent (None: no such delivery, or another partner's)."""
    row = await db.execute(
        text(
            "SELECT body FROM webhook_deliveries WHERE id = :id "
            "AND (CAST(:partner AS uuid) IS NULL OR partner_id = :partner)"
        ),
        {"id": delivery_id, "partner": partner_id},
    )
    found: str | None = row.scalar()
    return found


async def delivery_attempts(db: AsyncSession, delivery_id: uuid.UUID) -> list[Attempt]:
    """Every attempt of every round, newest first."""
    rows = await _rows(
        db,
        "SELECT number, url, started_at, finished_at, status_code, error, duration_ms "
        "FROM webhook_attempts WHERE delivery_id = :id ORDER BY id DESC",
        id=delivery_id,
    )
    return [Attempt(**r._mapping) for r in rows]


@dataclass(frozen=True)
class Endpoint:
    webhook_url: str | None
    disabled_at: datetime | None
    disabled_reason: str | None


async def webhook_endpoint(db: AsyncSession, partner_id: uuid.UUID) -> Endpoint | None:
    rows = await _rows(
        db,
        "SELECT pa.webhook_url, e.disabled_at, e.disabled_reason FROM partners pa "
        "LEFT JOIN webhook_endpoints e ON e.partner_id = pa.id WHERE pa.id = :p",
        p=partner_id,
    )
    return Endpoint(**rows[0]._mapping) if rows else None


# --- users ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserProfile:
    id: uuid.UUID
    handle: str | None
    display_name: str | None
    timezone: str
    region: str | None
    balance_g: int
    collected_total_g: int
    co2e_avoided_g: int
    created_at: datetime
    erased_at: datetime | None
    friends: int
    plantings: int


_PROFILE = (
    "SELECT u.id, u.handle, u.display_name, u.timezone, u.region, u.balance_g, "
    "u.collected_total_g, u.co2e_avoided_g, u.created_at, u.erased_at, "
    "(SELECT count(*) FROM friendships f WHERE f.user_id = u.id) AS friends, "
    "(SELECT count(*) FROM plantings p WHERE p.user_id = u.id) AS plantings "
    "FROM users u "
)


async def user_by_handle(db: AsyncSession, handle: str) -> UserProfile | None:
    rows = await _rows(db, _PROFILE + "WHERE u.handle = :h", h=handle)
    return UserProfile(**rows[0]._mapping) if rows else None


async def user_by_id(db: AsyncSession, user_id: uuid.UUID) -> UserProfile | None:
    rows = await _rows(db, _PROFILE + "WHERE u.id = :id", id=user_id)
    return UserProfile(**rows[0]._mapping) if rows else None


async def handles_like(db: AsyncSession, prefix: str, limit: int = 20) -> list[str]:
    """Live handles starting with ``prefix`` (the lookup's suggestions)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = await _rows(
        db,
        "SELECT handle FROM users WHERE handle LIKE :p AND erased_at IS NULL "
        "ORDER BY handle LIMIT :n",
        p=escaped + "%",
        n=limit,
    )
    return [r.handle for r in rows]


# --- the audit log ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    summary: str


async def audit_page(db: AsyncSession, before: int | None, limit: int) -> list[AuditRow]:
    """Newest first; ``limit + 1`` rows (to know whether more exist)."""
    rows = await _rows(
        db,
        "SELECT id, at, actor, action, target, summary FROM audit_entries "
        "WHERE CAST(:before AS bigint) IS NULL OR id < :before ORDER BY id DESC LIMIT :limit",
        before=before,
        limit=limit + 1,
    )
    return [AuditRow(**r._mapping) for r in rows]
