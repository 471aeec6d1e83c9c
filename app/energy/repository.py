"""All SQL of the energy domain: caps, activities, balls, the ledger.

Writes are set-based (one statement for a whole batch) so ingestion costs a handful of round
trips per batch, not one per event.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.bulk import Column, insert_rows

CapKey = tuple[uuid.UUID, str, str, date]  # user, kind, "day" | "month", period start

ACTIVITY_COLUMNS: tuple[Column, ...] = (
    ("user_id", "uuid"),
    ("source", "text"),
    ("external_id", "text"),
    ("kind", "text"),
    ("occurred_at", "timestamptz"),
    ("received_at", "timestamptz"),
    ("quantity", "numeric"),
    ("unit", "text"),
    ("attributes", "jsonb"),
    ("region", "text"),
    ("factor_g", "numeric"),
    ("rules_version", "int"),
    ("computed_g", "bigint"),
    ("energy_g", "bigint"),
    ("status", "text"),
    ("ball_id", "uuid"),
)
BALL_COLUMNS: tuple[Column, ...] = (
    ("id", "uuid"),
    ("user_id", "uuid"),
    ("kind", "text"),
    ("ref", "text"),
    ("amount_g", "bigint"),
    ("remaining_g", "bigint"),
    ("stealable", "boolean"),
    ("created_at", "timestamptz"),
    ("ripens_at", "timestamptz"),
    ("expires_at", "timestamptz"),
    ("expired_at", "timestamptz"),
    ("expired_g", "bigint"),
    ("stolen_g", "bigint"),
    ("rules_version", "int"),
)
ENTRY_COLUMNS: tuple[Column, ...] = (
    ("transfer_id", "uuid"),
    ("account", "text"),
    ("user_id", "uuid"),
    ("ball_id", "uuid"),
    ("amount_g", "bigint"),
    ("balance_after_g", "bigint"),
    ("reason", "text"),
    ("ref", "text"),
    ("rules_version", "int"),
    ("at", "timestamptz"),
)


@dataclass
class Counter:
    count: int
    grams: int


@dataclass(frozen=True)
class ExistingActivity:
    user_id: uuid.UUID
    external_id: str
    kind: str
    energy_g: int
    ball_id: uuid.UUID | None
    rules_version: int


class EnergyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- caps ---------------------------------------------------------------------------------

    async def lock_counters(self, keys: Sequence[CapKey]) -> dict[CapKey, Counter]:
        """Create-if-missing and lock the counters, in a fixed order (no deadlocks between
        batches). ON CONFLICT DO UPDATE takes the row lock in the same statement."""
        if not keys:
            return {}
        ordered = sorted(set(keys), key=lambda k: (str(k[0]), k[1], k[2], k[3]))
        rows = await self.session.execute(
            text(
                "INSERT INTO cap_counters AS c (user_id, kind, period, period_start, count, grams) "
                "SELECT u, k, p, s, 0, 0 FROM unnest("
                "CAST(:users AS uuid[]), CAST(:kinds AS text[]), CAST(:periods AS text[]), "
                "CAST(:starts AS date[])) WITH ORDINALITY AS t(u, k, p, s, n) ORDER BY n "
                "ON CONFLICT (user_id, kind, period, period_start) DO UPDATE SET count = c.count "
                "RETURNING user_id, kind, period, period_start, count, grams"
            ),
            {
                "users": [k[0] for k in ordered],
                "kinds": [k[1] for k in ordered],
                "periods": [k[2] for k in ordered],
                "starts": [k[3] for k in ordered],
            },
        )
        return {(r[0], r[1], r[2], r[3]): Counter(r[4], r[5]) for r in rows}

    async def save_counters(self, counters: dict[CapKey, Counter]) -> None:
        if not counters:
            return
        keys = list(counters)
        await self.session.execute(
            text(
                "UPDATE cap_counters AS c SET count = t.count, grams = t.grams FROM unnest("
                "CAST(:users AS uuid[]), CAST(:kinds AS text[]), CAST(:periods AS text[]), "
                "CAST(:starts AS date[]), CAST(:counts AS int[]), CAST(:grams AS bigint[])) "
                "AS t(user_id, kind, period, period_start, count, grams) "
                "WHERE c.user_id = t.user_id AND c.kind = t.kind AND c.period = t.period "
                "AND c.period_start = t.period_start"
            ),
            {
                "users": [k[0] for k in keys],
                "kinds": [k[1] for k in keys],
                "periods": [k[2] for k in keys],
                "starts": [k[3] for k in keys],
                "counts": [counters[k].count for k in keys],
                "grams": [counters[k].grams for k in keys],
            },
        )

    # --- activities ---------------------------------------------------------------------------

    async def existing_activities(
        self, source: str, keys: Sequence[tuple[uuid.UUID, str]]
    ) -> dict[tuple[uuid.UUID, str], ExistingActivity]:
        if not keys:
            return {}
        rows = await self.session.execute(
            text(
                "SELECT a.user_id, a.external_id, a.kind, a.energy_g, a.ball_id, a.rules_version "
                "FROM activities a JOIN unnest(CAST(:users AS uuid[]), CAST(:ids AS text[])) "
                "AS t(user_id, external_id) "
                "ON a.user_id = t.user_id AND a.external_id = t.external_id "
                "WHERE a.source = :source"
            ),
            {"users": [k[0] for k in keys], "ids": [k[1] for k in keys], "source": source},
        )
        return {(r[0], r[1]): ExistingActivity(*r) for r in rows}

    async def insert_activities(self, rows: list[dict[str, Any]]) -> set[tuple[uuid.UUID, str]]:
        """Insert; returns the keys actually inserted (a concurrent duplicate is skipped)."""
        if not rows:
            return set()
        result = await insert_rows(
            self.session,
            "activities",
            ACTIVITY_COLUMNS,
            rows,
            "ON CONFLICT (user_id, source, external_id) DO NOTHING RETURNING user_id, external_id",
        )
        return {(row.user_id, row.external_id) for row in result}

    # --- balls and the ledger -----------------------------------------------------------------

    async def insert_balls(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await insert_rows(self.session, "energy_balls", BALL_COLUMNS, rows)

    async def insert_entries(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await insert_rows(self.session, "ledger_entries", ENTRY_COLUMNS, rows)

    async def add_co2e(self, minted: dict[uuid.UUID, int]) -> None:
        if not minted:
            return
        await self.session.execute(
            text(
                "UPDATE users AS u SET co2e_avoided_g = u.co2e_avoided_g + t.g FROM unnest("
                "CAST(:users AS uuid[]), CAST(:grams AS bigint[])) AS t(id, g) WHERE u.id = t.id"
            ),
            {"users": list(minted), "grams": list(minted.values())},
        )

    async def user_profiles(
        self, user_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[str, str | None]]:
        """(timezone, region) of live users."""
        rows = await self.session.execute(
            text(
                "SELECT id, timezone, region FROM users "
                "WHERE id = ANY(CAST(:ids AS uuid[])) AND erased_at IS NULL"
            ),
            {"ids": list(set(user_ids))},
        )
        return {r[0]: (r[1], r[2]) for r in rows}


def mint_entries(
    *,
    ball_id: uuid.UUID,
    user_id: uuid.UUID,
    amount_g: int,
    ref: str,
    rules_version: int,
    at: datetime,
) -> list[dict[str, Any]]:
    """The two sides of minting: out of ``system:minted``, into the ball."""
    transfer = uuid.uuid4()
    common = {
        "transfer_id": transfer,
        "reason": "mint",
        "ref": ref,
        "rules_version": rules_version,
        "at": at,
        "balance_after_g": None,
    }
    return [
        {
            **common,
            "account": "system:minted",
            "user_id": None,
            "ball_id": None,
            "amount_g": -amount_g,
        },
        {**common, "account": "ball", "user_id": user_id, "ball_id": ball_id, "amount_g": amount_g},
    ]
