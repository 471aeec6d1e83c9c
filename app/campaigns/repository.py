"""All SQL of campaigns. A donation's transaction locks the donor's row, then the campaign's
(the order every writer of both uses); with the campaign locked, ``raised_g`` is current, so
exactly one donation sees itself cross the goal."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncSession

_COLUMNS = (
    "c.id, c.seq, c.name, c.description, c.goal_g, c.raised_g, c.donors, c.starts_at, "
    "c.ends_at, c.partner_id, c.completed_at, c.created_at, c.updated_at"
)
# who a leaderboard names: the display name, else the handle (erased users: nobody)
_NAME = "coalesce(u.display_name, u.handle)"


class CampaignsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[RowMapping]:
        return list((await self.session.execute(text(sql), params)).mappings())

    async def _row(self, sql: str, params: dict[str, Any]) -> RowMapping | None:
        return (await self.session.execute(text(sql), params)).mappings().first()

    async def partner_exists(self, partner_id: uuid.UUID) -> bool:
        row = await self._row("SELECT 1 FROM partners WHERE id = :id", {"id": partner_id})
        return row is not None

    async def insert(self, values: dict[str, Any]) -> None:
        await self.session.execute(
            text(
                "INSERT INTO campaigns (id, name, description, goal_g, raised_g, donors, "
                "starts_at, ends_at, partner_id, created_at, updated_at) VALUES (:id, :name, "
                ":description, :goal_g, 0, 0, :starts_at, :ends_at, :partner_id, :now, :now)"
            ),
            values,
        )

    async def campaign(self, campaign_id: uuid.UUID, *, lock: bool = False) -> RowMapping | None:
        return await self._row(
            f"SELECT {_COLUMNS} FROM campaigns c WHERE c.id = :id"  # noqa: S608
            + (" FOR NO KEY UPDATE" if lock else ""),
            {"id": campaign_id},
        )

    async def campaigns(self, *, since: datetime | None) -> list[RowMapping]:
        """Campaigns that end after ``since`` (None: all), soonest ending first."""
        return await self._rows(
            f"SELECT {_COLUMNS} FROM campaigns c "  # noqa: S608
            "WHERE CAST(:since AS timestamptz) IS NULL OR c.ends_at > :since "
            "ORDER BY c.ends_at, c.seq",
            {"since": since},
        )

    async def lock_user(self, user_id: uuid.UUID) -> RowMapping | None:
        return await self._row(
            "SELECT id, balance_g, timezone FROM users WHERE id = :id AND erased_at IS NULL "
            "FOR NO KEY UPDATE",
            {"id": user_id},
        )

    async def donated_since(self, user_id: uuid.UUID, since: datetime) -> int:
        row = await self._row(
            "SELECT coalesce(sum(amount_g), 0) AS grams FROM campaign_donations "
            "WHERE user_id = :user AND created_at >= :since",
            {"user": user_id, "since": since},
        )
        assert row is not None
        return int(row["grams"])

    async def donate(
        self,
        *,
        donation_id: uuid.UUID,
        campaign_id: uuid.UUID,
        user_id: uuid.UUID,
        amount_g: int,
        completes: bool,
        rules_version: int,
        now: datetime,
    ) -> RowMapping:
        """Record a donation: the donation row, the donor's total, the campaign's raised
        energy and donor count (and ``completed_at`` when ``completes``) — one statement; the
        campaign as it is afterwards."""
        row = await self._row(
            f"""
            WITH donation AS (
                INSERT INTO campaign_donations (id, campaign_id, user_id, amount_g,
                    rules_version, created_at)
                VALUES (:donation, :campaign, :user, :amount, :version, :now)
            ), donor AS (
                INSERT INTO campaign_donors AS d (campaign_id, user_id, donated_g, first_at,
                    last_at)
                VALUES (:campaign, :user, :amount, :now, :now)
                ON CONFLICT (campaign_id, user_id)
                DO UPDATE SET donated_g = d.donated_g + EXCLUDED.donated_g, last_at = :now
                RETURNING (xmax = 0) AS new_donor
            )
            UPDATE campaigns c SET raised_g = c.raised_g + :amount,
                donors = c.donors + (SELECT CASE WHEN new_donor THEN 1 ELSE 0 END FROM donor),
                completed_at = CASE WHEN :completes THEN CAST(:now AS timestamptz)
                    ELSE c.completed_at END,
                updated_at = :now
            WHERE c.id = :campaign
            RETURNING {_COLUMNS}
            """,  # noqa: S608 (constant fragments only)
            {
                "donation": donation_id,
                "campaign": campaign_id,
                "user": user_id,
                "amount": amount_g,
                "completes": completes,
                "version": rules_version,
                "now": now,
            },
        )
        assert row is not None
        return row

    async def leaders(self, campaign_id: uuid.UUID, limit: int) -> list[RowMapping]:
        return await self._rows(
            f"SELECT row_number() OVER (ORDER BY d.donated_g DESC, d.first_at, d.user_id) "  # noqa: S608
            f"AS rank, d.user_id, {_NAME} AS display_name, d.donated_g "
            "FROM campaign_donors d JOIN users u ON u.id = d.user_id "
            "WHERE d.campaign_id = :campaign "
            "ORDER BY d.donated_g DESC, d.first_at, d.user_id LIMIT :limit",
            {"campaign": campaign_id, "limit": limit},
        )

    async def place_of(self, campaign_id: uuid.UUID, user_id: uuid.UUID) -> RowMapping | None:
        """The user's row with their rank (those ahead of them, plus one)."""
        return await self._row(
            f"SELECT (SELECT count(*) FROM campaign_donors o WHERE o.campaign_id = d.campaign_id "  # noqa: S608
            "AND (o.donated_g > d.donated_g OR (o.donated_g = d.donated_g AND "
            "(o.first_at, o.user_id) < (d.first_at, d.user_id)))) + 1 AS rank, "
            f"d.user_id, {_NAME} AS display_name, d.donated_g "
            "FROM campaign_donors d JOIN users u ON u.id = d.user_id "
            "WHERE d.campaign_id = :campaign AND d.user_id = :user",
            {"campaign": campaign_id, "user": user_id},
        )

    async def stats(self) -> RowMapping:
        row = await self._row(
            "SELECT count(*) AS campaigns, count(completed_at) AS completed, "
            "coalesce(sum(raised_g), 0) AS donated_g, "
            "(SELECT count(DISTINCT user_id) FROM campaign_donors) AS donors FROM campaigns",
            {},
        )
        assert row is not None
        return row
