"""The double-entry ledger: a user's entries, expiry booking, and the invariant check."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.sql import Statement
from app.ledger.booking import EXPIRED, ball, book, system


@dataclass(frozen=True)
class EntryRow:
    id: int
    at: datetime
    amount_g: int
    balance_after_g: int
    reason: str
    ref: str
    rules_version: int


# the caller's balance entries, newest first (limit + 1 rows, to know if more exist)
USER_ENTRIES = Statement(
    "SELECT id, at, amount_g, balance_after_g, reason, ref, rules_version "
    "FROM ledger_entries WHERE user_id = CAST(:user AS uuid) AND account = 'user' "
    "AND (CAST(:before AS bigint) IS NULL OR id < CAST(:before AS bigint)) "
    "ORDER BY id DESC LIMIT CAST(:limit AS int)",
    row=EntryRow,
)


async def user_entries(
    session: AsyncSession, user_id: uuid.UUID, before_id: int | None, limit: int
) -> list[EntryRow]:
    """:data:`USER_ENTRIES` on a session (cold paths)."""
    rows = await session.execute(
        text(USER_ENTRIES.sql), {"user": user_id, "before": before_id, "limit": limit + 1}
    )
    return [EntryRow(**r._mapping) for r in rows]


def _expire(which: str, order: str) -> str:
    """Book what is left in the chosen balls to ``system:expired``, in one statement: the balls
    emptied (``expired_g`` keeps what expiry took) and both ledger sides of each."""
    entries = book(
        "booked",
        amount="booked.grams",
        debit=ball("booked.user_id", "booked.id"),
        credit=system(EXPIRED),
        reason="'expire'",
        ref="booked.ref",
        rules_version="booked.rules_version",
    )
    return f"""
    WITH due AS (
        SELECT id, user_id, remaining_g, ref, rules_version FROM energy_balls
        WHERE {which} AND remaining_g > 0 AND expired_at IS NULL
        {order}
    ), booked AS (
        UPDATE energy_balls b
        SET remaining_g = 0, expired_g = due.remaining_g, expired_at = :now
        FROM due WHERE b.id = due.id AND b.remaining_g > 0
        RETURNING b.id, b.user_id, due.remaining_g AS grams, due.ref, due.rules_version
    ), entries AS ({entries})
    SELECT count(*), coalesce(sum(grams), 0) FROM booked
    """  # noqa: S608 (composed from the ledger's constant fragments)


# balls past their time, a batch at a time, skipping ones another worker is booking
EXPIRE_DUE = text(
    _expire("expires_at <= :now", "ORDER BY expires_at LIMIT :batch FOR UPDATE SKIP LOCKED")
)
# every ball of one user still holding energy, whatever its time (erasure)
EXPIRE_USER = text(_expire("user_id = :user", "FOR UPDATE"))


async def book_expired(session: AsyncSession, now: datetime, batch: int = 5000) -> int:
    """Move what is left in expired balls to ``system:expired`` (worker job). Balls' *state* is
    derived from time already; this makes the ledger say where the energy went. Returns how
    many balls were booked."""
    result = await session.execute(EXPIRE_DUE, {"now": now, "batch": batch})
    return int(result.one()[0])


async def expire_all_of(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> int:
    """Expire at once every ball of the user that still holds energy; returns the grams."""
    result = await session.execute(EXPIRE_USER, {"now": now, "user": user_id})
    return int(result.one()[1])


CHECKS: dict[str, str] = {
    "ledger_sums_to_zero": "SELECT coalesce(sum(amount_g), 0) <> 0 FROM ledger_entries",
    "transfers_balanced": (
        "SELECT count(*) FROM (SELECT transfer_id FROM ledger_entries GROUP BY transfer_id "
        "HAVING sum(amount_g) <> 0 OR count(*) < 2) AS unbalanced"
    ),
    "user_balances_match_entries": (
        "SELECT count(*) FROM users u LEFT JOIN (SELECT user_id, sum(amount_g) AS total "
        "FROM ledger_entries WHERE account = 'user' GROUP BY user_id) l ON l.user_id = u.id "
        "WHERE u.balance_g <> coalesce(l.total, 0)"
    ),
    "balls_match_entries": (
        "SELECT count(*) FROM energy_balls b LEFT JOIN (SELECT ball_id, sum(amount_g) AS total "
        "FROM ledger_entries WHERE account = 'ball' GROUP BY ball_id) l ON l.ball_id = b.id "
        "WHERE b.remaining_g <> coalesce(l.total, 0)"
    ),
    "no_ball_over_taken": (
        "SELECT count(*) FROM energy_balls b JOIN (SELECT ball_id, "
        "coalesce(-sum(amount_g) FILTER (WHERE amount_g < 0), 0) AS taken, "
        "coalesce(sum(amount_g) FILTER (WHERE amount_g > 0), 0) AS given "
        "FROM ledger_entries WHERE account = 'ball' GROUP BY ball_id) l ON l.ball_id = b.id "
        "WHERE l.taken > l.given OR l.given <> b.amount_g"
    ),
    "nothing_negative": (
        "SELECT (SELECT count(*) FROM users WHERE balance_g < 0) "
        "+ (SELECT count(*) FROM energy_balls WHERE remaining_g < 0)"
    ),
    # a member never takes more out of groves than they put in
    "grove_holdings_not_negative": (
        "SELECT count(*) FROM (SELECT user_id FROM ledger_entries WHERE account = 'grove' "
        "GROUP BY user_id HAVING sum(amount_g) < 0) AS overdrawn"
    ),
}

TOTALS = text(
    "SELECT account, coalesce(sum(amount_g), 0) FROM ledger_entries "
    "WHERE account LIKE 'system:%' GROUP BY account"
)


async def check(session: AsyncSession) -> dict[str, Any]:
    """Run every invariant; each check reports how many rows break it (0 = fine)."""
    checks: dict[str, dict[str, Any]] = {}
    for name, sql in CHECKS.items():
        value = (await session.execute(text(sql))).scalar_one()
        broken = int(value)  # a count of offending rows (or 1/0 for a boolean check)
        checks[name] = {"ok": broken == 0, "violations": broken}
    totals = {row[0].split(":", 1)[1]: -int(row[1]) for row in await session.execute(TOTALS)}
    in_balls = (
        await session.execute(text("SELECT coalesce(sum(remaining_g), 0) FROM energy_balls"))
    ).scalar_one()
    in_groves = (
        await session.execute(
            text("SELECT coalesce(sum(amount_g), 0) FROM ledger_entries WHERE account = 'grove'")
        )
    ).scalar_one()
    in_balances = (
        await session.execute(text("SELECT coalesce(sum(balance_g), 0) FROM users"))
    ).scalar_one()
    return {
        "ok": all(c["ok"] for c in checks.values()),
        "checks": checks,
        "totals": {
            "minted_g": totals.get("minted", 0),
            "expired_g": -totals.get("expired", 0),
            "burned_g": -totals.get("burned", 0),
            "in_balls_g": int(in_balls),
            "in_balances_g": int(in_balances),
            "in_groves_g": int(in_groves),
        },
    }
