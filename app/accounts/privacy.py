"""A person's rights over their data: export everything held about them; erase them.

Erasure keeps the numbers and drops the person: the ledger stays balanced under the user's
random id (which names nobody once handle, display name, time zone and password are gone),
balls still holding energy expire at once through the ledger, and social ties, raw activity
details, props, feed and stored replies go. Plantings stay — the tree is real — but no longer
name anyone.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.revocations import note_revoked
from app.core.security import Keys
from app.ledger.entries import expire_all_of

logger = logging.getLogger("canopy.privacy")

ERASED_TIMEZONE = "Etc/UTC"
EXPORT_FORMAT = "canopy-export/1"


def _jsonable(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=str))


async def _rows(session: AsyncSession, sql: str, **params: Any) -> list[dict[str, Any]]:
    result = await session.execute(text(sql), params)
    return [_jsonable(dict(row)) for row in result.mappings()]


async def export(
    session: AsyncSession, keys: Keys, user_id: uuid.UUID, now: datetime
) -> dict[str, Any]:
    """Everything held about the user, as one JSON-ready document (see docs/privacy.md)."""
    u = {"u": user_id}
    [profile] = await _rows(
        session,
        "SELECT id, handle, display_name, timezone, region, region_previous, region_from, "
        "balance_g, collected_total_g, co2e_avoided_g, created_at, updated_at "
        "FROM users WHERE id = :u",
        **u,
    )
    document: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "exported_at": _jsonable(now),
        "profile": profile,
        "logins": await _rows(
            session,
            "SELECT id, created_at, refreshed_at, revoked_at, revoked_reason FROM auth_sessions "
            "WHERE user_id = :u ORDER BY created_at",
            **u,
        ),
        "activities": await _rows(
            session,
            "SELECT source, external_id AS id, kind, occurred_at, received_at, quantity, unit, "
            "attributes, region, factor_g, rules_version, computed_g, energy_g, status, ball_id "
            "FROM activities WHERE user_id = :u ORDER BY occurred_at",
            **u,
        ),
        "step_days": await _rows(
            session,
            "SELECT day, steps, source, updated_at, minted_at, energy_g, ball_id, rules_version "
            "FROM step_days WHERE user_id = :u ORDER BY day",
            **u,
        ),
        "balls": await _rows(
            session,
            "SELECT id, kind, ref, amount_g, remaining_g, stolen_g, expired_g, stealable, "
            "created_at, ripens_at, expires_at, expired_at, rules_version FROM energy_balls "
            "WHERE user_id = :u ORDER BY created_at",
            **u,
        ),
        "ledger_entries": await _rows(
            session,
            "SELECT id, transfer_id, account, ball_id, amount_g, balance_after_g, reason, ref, "
            "rules_version, at FROM ledger_entries WHERE user_id = :u ORDER BY id",
            **u,
        ),
        "friends": await _rows(
            session,
            "SELECT u.handle, f.created_at AS since FROM friendships f "
            "JOIN users u ON u.id = f.friend_id WHERE f.user_id = :u ORDER BY f.created_at",
            **u,
        ),
        "friend_requests": await _rows(
            session,
            "SELECT r.id, CASE WHEN r.from_user_id = :u THEN 'outgoing' ELSE 'incoming' END "
            "AS direction, o.handle AS other_handle, r.status, r.created_at, r.responded_at "
            "FROM friend_requests r JOIN users o ON o.id = CASE WHEN r.from_user_id = :u "
            "THEN r.to_user_id ELSE r.from_user_id END "
            "WHERE r.from_user_id = :u OR r.to_user_id = :u ORDER BY r.created_at",
            **u,
        ),
        "blocks": await _rows(
            session,
            "SELECT o.handle, b.created_at FROM blocks b JOIN users o ON o.id = b.blocked_id "
            "WHERE b.user_id = :u ORDER BY b.created_at",
            **u,
        ),
        "takes_from_friends": await _rows(
            session,
            "SELECT s.ball_id, o.handle AS owner_handle, s.n, s.amount_g, s.at "
            "FROM ball_steals s JOIN users o ON o.id = s.owner_id "
            "WHERE s.collector_id = :u ORDER BY s.at",
            **u,
        ),
        "props": await _rows(
            session, "SELECT type, count, active_until FROM props WHERE user_id = :u", **u
        ),
        "waterings_given": await _rows(
            session,
            "SELECT o.handle AS friend_handle, w.day, w.count FROM watering_days w "
            "JOIN users o ON o.id = w.receiver_id WHERE w.giver_id = :u ORDER BY w.day",
            **u,
        ),
        "feed": await _rows(
            session,
            "SELECT f.id, f.type, a.handle AS actor_handle, f.amount_g, f.ref, f.data, f.at "
            "FROM feed_items f LEFT JOIN users a ON a.id = f.actor_id "
            "WHERE f.user_id = :u ORDER BY f.id",
            **u,
        ),
    }
    stored = await session.execute(
        text(
            "SELECT key, status_code, response, created_at, expires_at FROM idempotency_keys "
            "WHERE user_id = :u AND response IS NOT NULL ORDER BY created_at"
        ),
        u,
    )
    document["stored_replies"] = [
        {
            "idempotency_key": row.key,
            "status": row.status_code,
            "reply": orjson.loads(keys.decrypt(row.response)),
            "created_at": _jsonable(row.created_at),
            "expires_at": _jsonable(row.expires_at),
        }
        for row in stored
    ]
    for extend in EXPORT_EXTENSIONS:
        document.update(await extend(session, user_id))
    return document


_END_LOGINS = text(
    "UPDATE auth_sessions SET revoked_at = :now, revoked_reason = 'erased' "
    "WHERE user_id = :u AND revoked_at IS NULL RETURNING id"
)
_ERASE: Sequence[str] = (
    "DELETE FROM refresh_tokens WHERE session_id IN "
    "(SELECT id FROM auth_sessions WHERE user_id = :u)",
    "DELETE FROM friendships WHERE user_id = :u OR friend_id = :u",
    "DELETE FROM friend_requests WHERE from_user_id = :u OR to_user_id = :u",
    "DELETE FROM blocks WHERE user_id = :u OR blocked_id = :u",
    "DELETE FROM props WHERE user_id = :u",
    "DELETE FROM watering_days WHERE giver_id = :u OR receiver_id = :u",
    "DELETE FROM feed_items WHERE user_id = :u",
    "DELETE FROM idempotency_keys WHERE user_id = :u OR owner = 'user:' || CAST(:u AS text)",
    "UPDATE activities SET attributes = NULL WHERE user_id = :u AND attributes IS NOT NULL",
    # the carbon account is personal: an erased user has none (the activities keep the numbers)
    "DELETE FROM carbon_months WHERE user_id = :u",
    "UPDATE step_days SET source = NULL WHERE user_id = :u AND source IS NOT NULL",
    "UPDATE users SET handle = NULL, display_name = NULL, password_hash = NULL, region = NULL, "
    "region_previous = NULL, timezone = :erased_tz, erased_at = :now, updated_at = :now "
    "WHERE id = :u",
)


async def erase(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> int:
    """Erase a person (see the module docstring). Returns how many grams expired with them."""
    grams = await expire_all_of(session, user_id, now)
    for extend in ERASE_EXTENSIONS:
        await extend(session, user_id, now)
    ended = await session.execute(_END_LOGINS, {"u": user_id, "now": now})
    note_revoked(row.id for row in ended)
    for sql in _ERASE:
        await session.execute(text(sql), {"u": user_id, "now": now, "erased_tz": ERASED_TIMEZONE})
    logger.info("account erased", extra={"expired_g": grams})
    return grams


# Domains with personal data of their own (planting) add to the export and the erasure here.
EXPORT_EXTENSIONS: list[Any] = []
ERASE_EXTENSIONS: list[Any] = []


async def purge_raw_details(session: AsyncSession, now: datetime, retention: timedelta) -> int:
    """Drop raw activity ``attributes`` and step ``source`` older than the retention window,
    keeping what the ledger and the methodology audit need (kind, quantity, factor, rules
    version, grams). Worker job; a batch at a time."""
    cutoff = now - retention
    activities = await session.execute(
        text(
            "UPDATE activities SET attributes = NULL WHERE (user_id, source, external_id) IN "
            "(SELECT user_id, source, external_id FROM activities WHERE attributes IS NOT NULL "
            "AND received_at < :cutoff LIMIT 5000)"
        ),
        {"cutoff": cutoff},
    )
    steps = await session.execute(
        text(
            "UPDATE step_days SET source = NULL WHERE (user_id, day) IN (SELECT user_id, day "
            "FROM step_days WHERE source IS NOT NULL AND updated_at < :cutoff LIMIT 5000)"
        ),
        {"cutoff": cutoff},
    )
    return int(getattr(activities, "rowcount", 0) or 0) + int(getattr(steps, "rowcount", 0) or 0)
