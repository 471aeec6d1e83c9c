"""All SQL of groves. Every change to a grove runs with its row locked (:meth:`lock`), taken
first, so a grove's contributions, joins and leaves happen one after another: the last
contribution cannot overshoot the target or plant twice. Lock order everywhere: the grove, then
users' rows, then the catalog item — the order redeeming uses for the last two.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger.booking import BURNED, book, grove, system, user
from app.planting.repository import history_at

#: ledger reasons of the energy a member moves into and back out of a grove
CONTRIBUTE = "grove_contribute"
REFUND = "grove_refund"

_GROVE_COLUMNS = (
    "g.id, g.name, g.owner_id, g.item_id, g.target_g, g.raised_g, g.members, g.status, "
    "g.planting_id, g.created_at, g.planted_at, i.name AS item_name, i.kind AS item_kind, "
    "i.species AS item_species, i.region AS item_region, i.unit AS item_unit, "
    "pa.name AS partner_name, p.status AS planting_status, p.certificate_number, p.planted_on, "
    "p.location_lat, p.location_lon"
)
_GROVE_FROM = (
    "FROM groves g JOIN catalog_items i ON i.id = g.item_id "
    "JOIN partners pa ON pa.id = i.partner_id LEFT JOIN plantings p ON p.id = g.planting_id "
)

# the member's balance into what they hold in groves, one transfer
_CONTRIBUTE = text(
    f"""
    WITH payer AS (
        UPDATE users SET balance_g = balance_g - CAST(:amount AS bigint)
        WHERE id = CAST(:me AS uuid) AND balance_g >= CAST(:amount AS bigint)
        RETURNING balance_g
    ), entries AS ({
        book(
            "payer",
            amount="CAST(:amount AS bigint)",
            debit=user("CAST(:me AS uuid)", balance_after="payer.balance_g"),
            credit=grove("CAST(:me AS uuid)"),
            reason=f"'{CONTRIBUTE}'",
            ref="CAST(:ref AS text)",
            rules_version="CAST(:version AS int)",
        )
    }), member AS (
        UPDATE grove_members SET contributed_g = contributed_g + CAST(:amount AS bigint)
        FROM payer WHERE grove_id = CAST(:grove AS uuid) AND user_id = CAST(:me AS uuid)
        RETURNING contributed_g
    ), raised AS (
        UPDATE groves SET raised_g = raised_g + CAST(:amount AS bigint), updated_at = :now
        FROM payer WHERE id = CAST(:grove AS uuid)
        RETURNING raised_g
    )
    SELECT payer.balance_g, (SELECT raised_g FROM raised) AS raised_g FROM payer
    """  # noqa: S608 (composed from constant fragments)
)

# what a member holds in the grove, back onto their balance (leaving before planting)
_REFUND = text(
    f"""
    WITH back AS (
        UPDATE users SET balance_g = balance_g + CAST(:amount AS bigint)
        WHERE id = CAST(:me AS uuid)
        RETURNING balance_g
    ), entries AS ({
        book(
            "back",
            amount="CAST(:amount AS bigint)",
            debit=grove("CAST(:me AS uuid)"),
            credit=user("CAST(:me AS uuid)", balance_after="back.balance_g"),
            reason=f"'{REFUND}'",
            ref="CAST(:ref AS text)",
            rules_version="CAST(:version AS int)",
        )
    })
    SELECT balance_g FROM back
    """  # noqa: S608 (composed from constant fragments)
)

# the full grove becomes a planting of its item under its owner, every member's holding burned
# (the item's budget unit was taken when the grove was created)
_PLANT = text(
    f"""
    WITH g AS (
        SELECT id, owner_id, item_id, target_g FROM groves WHERE id = CAST(:grove AS uuid)
    ), numbered AS (
        SELECT i.id, i.kind, i.partner_id,
               nextval(pg_get_serial_sequence('plantings', 'seq')) AS seq,
               CASE i.kind WHEN 'virtual' THEN 'completed' ELSE 'reserved' END AS status
        FROM catalog_items i JOIN g ON i.id = g.item_id
    ), planted AS (
        INSERT INTO plantings (id, seq, user_id, item_id, partner_id, kind, quantity, cost_g,
            status, certificate_number, history, rules_version, idempotency_key, created_at,
            updated_at)
        SELECT CAST(:planting AS uuid), n.seq, g.owner_id, n.id, n.partner_id, n.kind, 1,
               g.target_g, n.status,
               'CNP-' || CAST(:year AS text) || '-' || lpad(CAST(n.seq AS text), 8, '0'),
               jsonb_build_array(jsonb_build_object('status', n.status, 'at', CAST(:at AS text))),
               CAST(:version AS int), NULL, :now, :now
        FROM numbered n CROSS JOIN g
        RETURNING id, status, certificate_number
    ), shares AS (
        SELECT user_id, contributed_g FROM grove_members
        WHERE grove_id = CAST(:grove AS uuid) AND contributed_g > 0
    ), burned AS ({
        book(
            "shares s",
            amount="s.contributed_g",
            debit=grove("s.user_id"),
            credit=system(BURNED),
            reason="'burn'",
            ref="'planting:' || CAST(:planting AS text)",
            rules_version="CAST(:version AS int)",
        )
    }), done AS (
        UPDATE groves SET status = 'planted', planting_id = CAST(:planting AS uuid),
            planted_at = :now, updated_at = :now
        WHERE id = CAST(:grove AS uuid)
    )
    SELECT id, status, certificate_number FROM planted
    """  # noqa: S608 (composed from constant fragments)
)


class GroveRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _row(self, sql: str, params: dict[str, Any]) -> RowMapping | None:
        return (await self.session.execute(text(sql), params)).mappings().first()

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[RowMapping]:
        return list((await self.session.execute(text(sql), params)).mappings())

    async def lock_user(self, user_id: uuid.UUID) -> bool:
        """Serialise one user's grove changes (creating and joining count open groves)."""
        found = await self._row("SELECT id FROM users WHERE id = :u FOR UPDATE", {"u": user_id})
        return found is not None

    async def open_groves_of(self, user_id: uuid.UUID) -> int:
        row = await self._row(
            "SELECT count(*) AS n FROM grove_members m JOIN groves g ON g.id = m.grove_id "
            "WHERE m.user_id = :u AND g.status = 'open'",
            {"u": user_id},
        )
        assert row is not None
        return int(row["n"])

    async def open_grove_ids_of(self, user_id: uuid.UUID) -> list[uuid.UUID]:
        """The open groves a user is a member of, in id order (the order groves are locked)."""
        rows = await self._rows(
            "SELECT g.id FROM grove_members m JOIN groves g ON g.id = m.grove_id "
            "WHERE m.user_id = :u AND g.status = 'open' ORDER BY g.id",
            {"u": user_id},
        )
        return [row["id"] for row in rows]

    async def take_budget_unit(self, item_id: uuid.UUID, now: datetime) -> RowMapping | None:
        """One unit of the item's budget for a new grove, checked in the same statement."""
        return await self._row(
            "UPDATE catalog_items SET taken = taken + 1, updated_at = :now "
            "WHERE id = :item AND status = 'available' AND taken + 1 <= budget "
            "RETURNING id, cost_g",
            {"item": item_id, "now": now},
        )

    async def return_budget_unit(self, item_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            text(
                "UPDATE catalog_items SET taken = taken - 1, updated_at = :now "
                "WHERE id = :item AND taken > 0"
            ),
            {"item": item_id, "now": now},
        )

    async def item(self, item_id: uuid.UUID) -> RowMapping | None:
        return await self._row(
            "SELECT id, name, unit, status, budget, taken FROM catalog_items WHERE id = :id",
            {"id": item_id},
        )

    async def insert_grove(self, values: dict[str, Any]) -> None:
        await self.session.execute(
            text(
                "INSERT INTO groves (id, name, owner_id, item_id, target_g, raised_g, members, "
                "status, planting_id, rules_version, created_at, updated_at, planted_at) "
                "VALUES (:id, :name, :owner, :item, :target, 0, 1, 'open', NULL, :version, "
                ":now, :now, NULL)"
            ),
            values,
        )
        await self.add_member(values["id"], values["owner"], values["now"])

    async def add_member(self, grove_id: uuid.UUID, user_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            text(
                "INSERT INTO grove_members (grove_id, user_id, contributed_g, joined_at) "
                "VALUES (:g, :u, 0, :now)"
            ),
            {"g": grove_id, "u": user_id, "now": now},
        )
        await self.session.execute(
            text("DELETE FROM grove_invites WHERE grove_id = :g AND user_id = :u"),
            {"g": grove_id, "u": user_id},
        )

    async def lock(self, grove_id: uuid.UUID) -> RowMapping | None:
        """The grove's row, locked until the transaction ends."""
        return await self._row(
            "SELECT id, owner_id, item_id, target_g, raised_g, members, status FROM groves "
            "WHERE id = :id FOR UPDATE",
            {"id": grove_id},
        )

    async def membership(self, grove_id: uuid.UUID, user_id: uuid.UUID) -> RowMapping | None:
        return await self._row(
            "SELECT contributed_g, joined_at FROM grove_members "
            "WHERE grove_id = :g AND user_id = :u",
            {"g": grove_id, "u": user_id},
        )

    async def invited(self, grove_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        row = await self._row(
            "SELECT 1 AS x FROM grove_invites WHERE grove_id = :g AND user_id = :u",
            {"g": grove_id, "u": user_id},
        )
        return row is not None

    async def invite(
        self, grove_id: uuid.UUID, user_id: uuid.UUID, inviter: uuid.UUID, now: datetime
    ) -> bool:
        """Invite; False when they were invited already."""
        row = await self._row(
            "INSERT INTO grove_invites (grove_id, user_id, inviter_id, created_at) "
            "VALUES (:g, :u, :by, :now) ON CONFLICT DO NOTHING RETURNING grove_id",
            {"g": grove_id, "u": user_id, "by": inviter, "now": now},
        )
        return row is not None

    async def set_members(self, grove_id: uuid.UUID, delta: int, now: datetime) -> None:
        await self.session.execute(
            text("UPDATE groves SET members = members + :d, updated_at = :now WHERE id = :g"),
            {"g": grove_id, "d": delta, "now": now},
        )

    async def contribute(
        self, *, grove_id: uuid.UUID, me: uuid.UUID, amount_g: int, version: int, now: datetime
    ) -> tuple[int, int] | None:
        """Move ``amount_g`` from my balance into the grove; (my balance, raised) or None when
        my balance does not cover it (nothing moved)."""
        row = (
            await self.session.execute(
                _CONTRIBUTE,
                {
                    "grove": grove_id,
                    "me": me,
                    "amount": amount_g,
                    "ref": f"grove:{grove_id}",
                    "version": version,
                    "now": now,
                },
            )
        ).first()
        return (int(row[0]), int(row[1])) if row else None

    async def refund(
        self, *, grove_id: uuid.UUID, me: uuid.UUID, amount_g: int, version: int, now: datetime
    ) -> int:
        """What I hold in the grove back onto my balance; my new balance."""
        balance = (
            await self.session.execute(
                _REFUND,
                {
                    "me": me,
                    "amount": amount_g,
                    "ref": f"grove:{grove_id}",
                    "version": version,
                    "now": now,
                },
            )
        ).scalar_one()
        await self.session.execute(
            text("UPDATE groves SET raised_g = raised_g - :a, updated_at = :now WHERE id = :g"),
            {"g": grove_id, "a": amount_g, "now": now},
        )
        return int(balance)

    async def remove_member(self, grove_id: uuid.UUID, user_id: uuid.UUID) -> None:
        await self.session.execute(
            text("DELETE FROM grove_members WHERE grove_id = :g AND user_id = :u"),
            {"g": grove_id, "u": user_id},
        )

    async def hand_over(self, grove_id: uuid.UUID, now: datetime) -> None:
        """The longest-standing member becomes the owner (the creator left)."""
        await self.session.execute(
            text(
                "UPDATE groves SET owner_id = (SELECT user_id FROM grove_members "
                "WHERE grove_id = :g ORDER BY joined_at, user_id LIMIT 1), updated_at = :now "
                "WHERE id = :g"
            ),
            {"g": grove_id, "now": now},
        )

    async def disband(self, grove_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            text("UPDATE groves SET status = 'disbanded', updated_at = :now WHERE id = :g"),
            {"g": grove_id, "now": now},
        )
        await self.session.execute(
            text("DELETE FROM grove_invites WHERE grove_id = :g"), {"g": grove_id}
        )

    async def plant(
        self, *, grove_id: uuid.UUID, planting_id: uuid.UUID, version: int, now: datetime
    ) -> RowMapping:
        row = (
            (
                await self.session.execute(
                    _PLANT,
                    {
                        "grove": grove_id,
                        "planting": planting_id,
                        "version": version,
                        "now": now,
                        "year": f"{now.year:04d}",
                        "at": history_at(now),
                    },
                )
            )
            .mappings()
            .one()
        )
        return row

    # --- reads --------------------------------------------------------------------------------

    async def grove(self, grove_id: uuid.UUID) -> RowMapping | None:
        return await self._row(
            f"SELECT {_GROVE_COLUMNS} {_GROVE_FROM} WHERE g.id = :id",
            {"id": grove_id},
        )

    async def groves_of(self, user_id: uuid.UUID) -> list[RowMapping]:
        """Groves I belong to or am invited to, open ones first, newest first."""
        return await self._rows(
            f"SELECT {_GROVE_COLUMNS}, "  # noqa: S608
            "EXISTS (SELECT 1 FROM grove_members m WHERE m.grove_id = g.id AND m.user_id = :u) "
            "AS member "
            f"{_GROVE_FROM} WHERE g.id IN (SELECT grove_id FROM grove_members WHERE user_id = :u "
            "UNION SELECT grove_id FROM grove_invites WHERE user_id = :u) "
            "ORDER BY g.status <> 'open', g.created_at DESC, g.id LIMIT 200",
            {"u": user_id},
        )

    async def members(self, grove_ids: list[uuid.UUID]) -> list[RowMapping]:
        return await self._rows(
            "SELECT m.grove_id, m.user_id, u.handle, u.display_name, m.contributed_g, m.joined_at "
            "FROM grove_members m JOIN users u ON u.id = m.user_id "
            "WHERE m.grove_id = ANY(CAST(:ids AS uuid[])) ORDER BY m.joined_at, m.user_id",
            {"ids": grove_ids},
        )

    async def member_ids(self, grove_id: uuid.UUID) -> list[uuid.UUID]:
        rows = await self._rows(
            "SELECT user_id FROM grove_members WHERE grove_id = :g ORDER BY joined_at, user_id",
            {"g": grove_id},
        )
        return [r["user_id"] for r in rows]

    async def grove_of_planting(self, planting_id: uuid.UUID) -> uuid.UUID | None:
        row = await self._row("SELECT id FROM groves WHERE planting_id = :p", {"p": planting_id})
        return row["id"] if row else None
