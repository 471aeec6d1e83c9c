"""All SQL of rewards: the catalog, code pools, redemptions and their refunds.

A redemption's transaction locks the user's row, then the reward's (the order every writer of
both uses, so two never deadlock); with both held, the budget, the per-user limit and the daily
ceiling are read current and cannot change before the transaction commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncSession

# Queries below interpolate only these constant fragments (hence their ``noqa: S608``).
_REWARD_COLUMNS = (
    "r.id, r.seq, r.partner_id, pa.name AS partner_name, r.name, r.description, r.kind, "
    "r.cost_g, r.budget, r.taken, r.per_user_limit, r.limit_period, r.valid_from, "
    "r.valid_until, r.fulfilment, r.fulfil_timeout_s, r.status, r.created_at, r.updated_at, "
    "(SELECT count(*) FROM reward_codes c WHERE c.reward_id = r.id "
    " AND c.redemption_id IS NULL) AS codes_free"
)
_REDEMPTION_COLUMNS = (
    "d.id, d.seq, d.user_id, d.reward_id, d.partner_id, d.cost_g, d.status, d.code_encrypted, "
    "d.failure_reason, d.deadline, d.rules_version, d.created_at, d.fulfilled_at, d.failed_at, "
    "r.name AS reward_name, r.kind AS reward_kind"
)
_UPDATABLE = frozenset(
    {"name", "description", "budget", "per_user_limit", "valid_until", "fulfil_timeout_s", "status"}
)


class RewardsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[RowMapping]:
        return list((await self.session.execute(text(sql), params)).mappings())

    async def _row(self, sql: str, params: dict[str, Any]) -> RowMapping | None:
        return (await self.session.execute(text(sql), params)).mappings().first()

    # --- catalog ------------------------------------------------------------------------------

    async def partner(self, partner_id: uuid.UUID) -> RowMapping | None:
        return await self._row(
            "SELECT id, name, scopes FROM partners WHERE id = :id", {"id": partner_id}
        )

    async def insert_reward(self, values: dict[str, Any]) -> None:
        await self.session.execute(
            text(
                "INSERT INTO rewards (id, partner_id, name, description, kind, cost_g, budget, "
                "taken, per_user_limit, limit_period, valid_from, valid_until, fulfilment, "
                "fulfil_timeout_s, status, created_at, updated_at) VALUES (:id, :partner_id, "
                ":name, :description, :kind, :cost_g, :budget, 0, :per_user_limit, "
                ":limit_period, :valid_from, :valid_until, :fulfilment, :fulfil_timeout_s, "
                ":status, :now, :now)"
            ),
            values,
        )

    async def reward(self, reward_id: uuid.UUID, *, lock: bool = False) -> RowMapping | None:
        """One reward; ``lock`` takes its row lock (after the user's: see the module doc)."""
        return await self._row(
            f"SELECT {_REWARD_COLUMNS} FROM rewards r JOIN partners pa ON pa.id = r.partner_id "  # noqa: S608
            "WHERE r.id = :id" + (" FOR NO KEY UPDATE OF r" if lock else ""),
            {"id": reward_id},
        )

    async def rewards(self, *, live_at: datetime | None) -> list[RowMapping]:
        """Every reward (operators), or those redeemable at ``live_at`` (users), oldest first."""
        return await self._rows(
            f"SELECT {_REWARD_COLUMNS} FROM rewards r JOIN partners pa ON pa.id = r.partner_id "  # noqa: S608
            "WHERE CAST(:live AS timestamptz) IS NULL OR (r.status = 'available' "
            "AND (r.valid_from IS NULL OR r.valid_from <= :live) "
            "AND (r.valid_until IS NULL OR r.valid_until > :live)) "
            "ORDER BY r.seq",
            {"live": live_at},
        )

    async def update_reward(
        self, reward_id: uuid.UUID, values: dict[str, Any], now: datetime
    ) -> bool | None:
        """Apply ``values``; None if there is no such reward, False if the new budget would
        fall below what is already taken (checked in the same statement as the write)."""
        assert set(values) <= _UPDATABLE
        assignments = "".join(f", {column} = :{column}" for column in values)
        row = await self._row(
            f"UPDATE rewards SET updated_at = :now{assignments} WHERE id = :id "  # noqa: S608 (columns are schema fields)
            "AND (CAST(:new_budget AS bigint) IS NULL OR CAST(:new_budget AS bigint) >= taken) "
            "RETURNING id",
            {**values, "new_budget": values.get("budget"), "id": reward_id, "now": now},
        )
        if row is not None:
            return True
        exists = await self._row("SELECT 1 FROM rewards WHERE id = :id", {"id": reward_id})
        return None if exists is None else False

    # --- code pools ---------------------------------------------------------------------------

    async def add_codes(
        self, reward_id: uuid.UUID, codes: Sequence[tuple[str, bytes]], now: datetime
    ) -> int:
        """Add (digest, encrypted code) pairs; a digest the pool already has is skipped. How
        many were new."""
        rows = await self._rows(
            "INSERT INTO reward_codes (reward_id, code_hash, code_encrypted, added_at) "
            "SELECT :reward, h, c, :now FROM unnest(CAST(:hashes AS text[]), "
            "CAST(:codes AS bytea[])) AS t(h, c) "
            "ON CONFLICT (reward_id, code_hash) DO NOTHING RETURNING id",
            {
                "reward": reward_id,
                "hashes": [h for h, _ in codes],
                "codes": [c for _, c in codes],
                "now": now,
            },
        )
        return len(rows)

    async def claim_code(
        self, reward_id: uuid.UUID, redemption_id: uuid.UUID, now: datetime
    ) -> bytes | None:
        """Bind the pool's oldest free code to the redemption, for good; None when the pool is
        empty. (Callers hold the reward's lock, so two redemptions never race for a code; the
        unique index on ``redemption_id`` and the ``IS NULL`` guard hold regardless.)"""
        row = await self._row(
            "UPDATE reward_codes SET redemption_id = :redemption, issued_at = :now "
            "WHERE id = (SELECT id FROM reward_codes WHERE reward_id = :reward "
            "AND redemption_id IS NULL ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) "
            "AND redemption_id IS NULL RETURNING code_encrypted",
            {"reward": reward_id, "redemption": redemption_id, "now": now},
        )
        return None if row is None else bytes(row["code_encrypted"])

    # --- redeeming ----------------------------------------------------------------------------

    async def lock_user(self, user_id: uuid.UUID) -> RowMapping | None:
        """The live user's balance and zone, locked for the rest of the transaction."""
        return await self._row(
            "SELECT id, balance_g, timezone FROM users WHERE id = :id AND erased_at IS NULL "
            "FOR NO KEY UPDATE",
            {"id": user_id},
        )

    async def redeemed_since(
        self, user_id: uuid.UUID, reward_id: uuid.UUID | None, since: datetime | None
    ) -> tuple[int, int]:
        """The user's redemptions that were not failed (of one reward, or all) since a
        moment (or ever): how many, and the energy they cost."""
        row = await self._row(
            "SELECT count(*) AS n, coalesce(sum(cost_g), 0) AS grams FROM redemptions "
            "WHERE user_id = :user AND status <> 'failed' "
            "AND (CAST(:reward AS uuid) IS NULL OR reward_id = :reward) "
            "AND (CAST(:since AS timestamptz) IS NULL OR created_at >= :since)",
            {"user": user_id, "reward": reward_id, "since": since},
        )
        assert row is not None
        return int(row["n"]), int(row["grams"])

    async def take_budget(self, reward_id: uuid.UUID, now: datetime) -> bool:
        row = await self._row(
            "UPDATE rewards SET taken = taken + 1, updated_at = :now "
            "WHERE id = :id AND taken < budget RETURNING id",
            {"id": reward_id, "now": now},
        )
        return row is not None

    async def release_budget(self, reward_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            text(
                "UPDATE rewards SET taken = taken - 1, updated_at = :now "
                "WHERE id = :id AND taken > 0"
            ),
            {"id": reward_id, "now": now},
        )

    async def insert_redemption(self, values: dict[str, Any]) -> None:
        await self.session.execute(
            text(
                "INSERT INTO redemptions (id, user_id, reward_id, partner_id, cost_g, status, "
                "code_encrypted, deadline, rules_version, created_at, fulfilled_at) "
                "VALUES (:id, :user_id, :reward_id, :partner_id, :cost_g, :status, "
                ":code_encrypted, :deadline, :rules_version, :now, :fulfilled_at)"
            ),
            values,
        )

    # --- reading redemptions ------------------------------------------------------------------

    async def redemption(
        self, redemption_id: uuid.UUID, *, partner_id: uuid.UUID | None = None, lock: bool = False
    ) -> RowMapping | None:
        """One redemption (only if it is ``partner_id``'s, when given); ``lock`` serialises
        fulfilling, failing and timing it out."""
        return await self._row(
            f"SELECT {_REDEMPTION_COLUMNS} FROM redemptions d "  # noqa: S608
            "JOIN rewards r ON r.id = d.reward_id WHERE d.id = :id "
            "AND (CAST(:partner AS uuid) IS NULL OR d.partner_id = :partner)"
            + (" FOR UPDATE OF d" if lock else ""),
            {"id": redemption_id, "partner": partner_id},
        )

    async def redemptions(
        self,
        *,
        user_id: uuid.UUID | None = None,
        partner_id: uuid.UUID | None = None,
        status: str | None = None,
        before_seq: int | None = None,
        limit: int,
    ) -> list[RowMapping]:
        """Newest first; ``limit + 1`` rows, to know whether another page exists."""
        return await self._rows(
            f"SELECT {_REDEMPTION_COLUMNS} FROM redemptions d "  # noqa: S608
            "JOIN rewards r ON r.id = d.reward_id "
            "WHERE (CAST(:user AS uuid) IS NULL OR d.user_id = :user) "
            "AND (CAST(:partner AS uuid) IS NULL OR d.partner_id = :partner) "
            "AND (CAST(:status AS text) IS NULL OR d.status = CAST(:status AS text)) "
            "AND (CAST(:before AS bigint) IS NULL OR d.seq < :before) "
            "ORDER BY d.seq DESC LIMIT :limit",
            {
                "user": user_id,
                "partner": partner_id,
                "status": status,
                "before": before_seq,
                "limit": limit + 1,
            },
        )

    # --- fulfilling and failing ---------------------------------------------------------------

    async def mark_issued(
        self, redemption_id: uuid.UUID, code_encrypted: bytes | None, now: datetime
    ) -> None:
        await self.session.execute(
            text(
                "UPDATE redemptions SET status = 'issued', code_encrypted = :code, "
                "fulfilled_at = :now, deadline = NULL WHERE id = :id AND status = 'pending'"
            ),
            {"id": redemption_id, "code": code_encrypted, "now": now},
        )

    async def mark_failed(self, redemption_id: uuid.UUID, reason: str, now: datetime) -> None:
        await self.session.execute(
            text(
                "UPDATE redemptions SET status = 'failed', failure_reason = :reason, "
                "failed_at = :now, deadline = NULL WHERE id = :id AND status = 'pending'"
            ),
            {"id": redemption_id, "reason": reason, "now": now},
        )

    async def overdue(self, now: datetime, limit: int) -> list[uuid.UUID]:
        """Pending redemptions past their deadline, locked (rows another worker holds are
        skipped)."""
        rows = await self._rows(
            "SELECT id FROM redemptions WHERE status = 'pending' AND deadline <= :now "
            "ORDER BY deadline LIMIT :limit FOR UPDATE SKIP LOCKED",
            {"now": now, "limit": limit},
        )
        return [r["id"] for r in rows]

    async def lock_users_of(self, redemption_ids: Sequence[uuid.UUID]) -> None:
        """Lock the balances refunds will credit, in id order, before any reward's row: a
        batch holding one reward while waiting for a user a redemption holds (who waits for
        that reward) would deadlock."""
        await self.session.execute(
            text(
                "SELECT id FROM users WHERE id IN (SELECT user_id FROM redemptions "
                "WHERE id = ANY(CAST(:ids AS uuid[]))) ORDER BY id FOR NO KEY UPDATE"
            ),
            {"ids": list(redemption_ids)},
        )

    # --- privacy and stats --------------------------------------------------------------------

    async def forget_codes_of(self, user_id: uuid.UUID) -> None:
        """Erasure: the codes handed to the user go with them (the pool keeps them as used)."""
        await self.session.execute(
            text(
                "UPDATE redemptions SET code_encrypted = NULL "
                "WHERE user_id = :user AND code_encrypted IS NOT NULL"
            ),
            {"user": user_id},
        )

    async def stats(self) -> RowMapping:
        row = await self._row(
            "SELECT (SELECT count(*) FROM rewards WHERE status = 'available') AS rewards, "
            "count(*) FILTER (WHERE status = 'issued') AS issued, "
            "count(*) FILTER (WHERE status = 'pending') AS pending, "
            "count(*) FILTER (WHERE status = 'failed') AS failed, "
            "coalesce(sum(cost_g) FILTER (WHERE status <> 'failed'), 0) AS energy_spent_g "
            "FROM redemptions",
            {},
        )
        assert row is not None
        return row
