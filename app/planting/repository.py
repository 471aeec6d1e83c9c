"""All SQL of planting: catalog budgets, plantings, orders and reports, the webhook outbox, stats.

Budgets and balances change only in single conditional statements (``... WHERE taken + :q <=
budget``), so concurrent redemptions can never oversell an item or spend energy twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg
from sqlalchemy import RowMapping, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.models import table_of
from app.core.sql import Pg, Statement
from app.ledger.booking import BURNED, book, running_balance, system, user
from app.planting.models import CatalogItem, OrderReport

# --- shared SELECT lists ---------------------------------------------------------------------

_ITEM_COLUMNS = (
    "i.id, i.kind, i.name, i.species, i.unit, i.cost_g, i.region, i.partner_id, i.season, "
    "i.budget, i.taken, i.status, i.created_at, i.updated_at, pa.name AS partner_name"
)
_PLANTING_COLUMNS = (
    "p.id, p.seq, p.user_id, p.quantity, p.cost_g, p.status, p.certificate_number, p.history, "
    "p.location_lat, p.location_lon, p.planted_on, p.created_at, p.order_id, "
    "i.id AS item_id, i.kind AS item_kind, i.name AS item_name, i.species AS item_species, "
    "i.unit AS item_unit, i.region AS item_region, pa.id AS partner_id, pa.name AS partner_name"
)
_ORDER_COLUMNS = (
    "o.id, o.seq, o.partner_id, o.item_id, o.quantity, o.planted_quantity, o.status, "
    "o.external_ref, o.verified_by, o.verification_note, o.cancel_reason, o.created_at, "
    "o.acknowledged_at, o.planted_at, o.verified_at, o.cancelled_at, "
    "i.kind AS item_kind, i.name AS item_name, i.species AS item_species, "
    "i.region AS item_region, i.unit AS item_unit, pa.name AS partner_name"
)
_DELIVERY_COLUMNS = (
    "d.id, d.seq, d.event_id, d.type, d.partner_id, d.status, d.attempts, d.next_attempt_at, "
    "d.last_attempt_at, d.last_status_code, d.last_error, d.delivered_at, d.created_at, "
    "pa.name AS partner_name"
)

# Queries below interpolate only these constant fragments (hence their ``noqa: S608``).

# history entries are appended in the statement that changes the status
_APPEND_HISTORY = (
    "history = history || jsonb_build_array(jsonb_build_object("
    "'status', CAST(:status AS text), 'at', CAST(:at AS text)))"
)


def history_at(now: datetime) -> str:
    """How a moment is written into a planting's history (RFC 3339, UTC, ``Z``)."""
    return now.isoformat().replace("+00:00", "Z")


# --- redeeming: the hot path, one statement on the raw pool ----------------------------------

KEY_INDEX = "ix_plantings_user_id_idempotency_key"


@dataclass(frozen=True, slots=True)
class Redemption:
    """What the redeeming statement saw and did (:data:`REDEEM`). ``prior_*``: the planting
    this request's ``Idempotency-Key`` already made (nothing else happened then); ``id`` ...
    ``balance_g``: the planting just made; otherwise the item and the balance say why not."""

    # the planting made earlier with this key, if any
    prior_id: uuid.UUID | None
    prior_item_id: uuid.UUID | None
    prior_quantity: int | None
    prior_cost_g: int | None
    prior_status: str | None  # the status the first reply showed
    prior_certificate_number: str | None
    prior_created_at: datetime | None
    prior_balance_g: int | None
    # the planting made now, if any
    id: uuid.UUID | None
    status: str | None
    cost_g: int | None
    certificate_number: str | None
    created_at: datetime | None
    balance_g: int | None
    # the item as the statement began (names for the reply; why a refusal was refused)
    item_found: bool
    item_kind: str | None
    item_name: str | None
    item_species: str | None
    item_unit: str | None
    item_region: str | None
    item_status: str | None
    item_budget: int | None
    item_taken: int | None
    item_cost_g: int | None
    partner_id: uuid.UUID | None
    partner_name: str | None
    # the payer's balance once locked (NULL: no such user, or a prior planting answered)
    user_balance_g: int | None
    # the payer's row changed while this statement waited for its lock (a concurrent request
    # of the same user committed meanwhile — maybe one with this very key)
    raced: bool


# The payer's row is locked first and the item's budget taken only if the balance covers the
# cost, so the debit that follows cannot fail: every refusal changes nothing. The user row is
# locked before the (shared, hot) item row by every redemption, so two never deadlock.
# ``prior`` sees only what committed before the statement began; a request with the same key
# committed while this one waited on the payer's lock is caught by the unique index (or by
# ``raced`` when this one is refused) and answered by running the statement again.
_REDEEM_SQL = f"""
WITH prior AS MATERIALIZED (
    SELECT p.id, p.item_id, p.quantity, p.cost_g, p.history -> 0 ->> 'status' AS status,
           p.certificate_number, p.created_at, burn.balance_after_g
    FROM plantings p
    LEFT JOIN LATERAL (
        -- the balance the first reply showed: its burn's entry (newest first: it is recent)
        SELECT e.balance_after_g FROM ledger_entries e
        WHERE e.user_id = p.user_id AND e.account = 'user' AND e.reason = 'burn'
          AND e.ref = 'planting:' || p.id
        ORDER BY e.id DESC LIMIT 1
    ) burn ON TRUE
    WHERE p.user_id = :user AND p.idempotency_key = CAST(:key AS text)
      AND p.created_at > :fresh_after
), released AS (
    -- a key past its time is forgotten, so it may make a new planting
    UPDATE plantings SET idempotency_key = NULL
    WHERE user_id = :user AND idempotency_key = CAST(:key AS text)
      AND created_at <= :fresh_after
    RETURNING id
), payer_locked AS MATERIALIZED (
    SELECT u.balance_g, CAST(u.xmin AS text) AS row_version FROM users u
    WHERE u.id = :user AND NOT EXISTS (SELECT 1 FROM prior)
    FOR NO KEY UPDATE
), taken AS (
    UPDATE catalog_items i
    SET taken = i.taken + CAST(:quantity AS integer), updated_at = :now
    FROM payer_locked me
    WHERE i.id = :item AND i.status = 'available'
      AND i.taken + CAST(:quantity AS integer) <= i.budget
      AND me.balance_g >= i.cost_g * CAST(:quantity AS integer)
    RETURNING i.id, i.kind, i.partner_id, i.cost_g * CAST(:quantity AS integer) AS cost_g
), payer AS (
    -- from the locked row's balance, not this UPDATE's snapshot version of it: a stale, lower
    -- balance would fail the CHECK constraint before PostgreSQL re-reads the current row (we
    -- hold the row's lock since payer_locked, so nothing changed it in between)
    UPDATE users u SET balance_g = me.balance_g - taken.cost_g
    FROM taken, payer_locked me WHERE u.id = :user
    RETURNING u.balance_g
), numbered AS (
    -- the certificate number comes from the planting's own sequence value; reading
    -- ``released`` here frees an expired key before the insert below claims it again (a CTE
    -- nobody reads would run only after the main query)
    SELECT taken.*, nextval(pg_get_serial_sequence('plantings', 'seq')) AS seq,
           CASE taken.kind WHEN 'virtual' THEN 'completed' ELSE 'reserved' END AS status
    FROM taken CROSS JOIN (SELECT count(*) FROM released) AS freed
), planted AS (
    INSERT INTO plantings (id, seq, user_id, item_id, partner_id, kind, quantity, cost_g,
        status, certificate_number, history, rules_version, idempotency_key, created_at,
        updated_at)
    SELECT :id, n.seq, :user, n.id, n.partner_id, n.kind, CAST(:quantity AS integer), n.cost_g,
           n.status, 'CNP-' || CAST(:year AS text) || '-' || lpad(CAST(n.seq AS text), 8, '0'),
           jsonb_build_array(jsonb_build_object('status', n.status, 'at', CAST(:at AS text))),
           CAST(:version AS integer), CAST(:key AS text), :now, :now
    FROM numbered n
    RETURNING id, status, cost_g, certificate_number, created_at
), burned AS ({
    book(
        "planted",
        amount="planted.cost_g",
        debit=user("CAST(:user AS uuid)", balance_after="payer.balance_g"),
        credit=system(BURNED),
        reason="'burn'",
        ref="'planting:' || planted.id",
        rules_version="CAST(:version AS integer)",
        joins="CROSS JOIN payer",
    )
})
SELECT prior.id AS prior_id, prior.item_id AS prior_item_id, prior.quantity AS prior_quantity,
       prior.cost_g AS prior_cost_g, prior.status AS prior_status,
       prior.certificate_number AS prior_certificate_number,
       prior.created_at AS prior_created_at, prior.balance_after_g AS prior_balance_g,
       planted.id, planted.status, planted.cost_g, planted.certificate_number, planted.created_at,
       payer.balance_g,
       i.id IS NOT NULL AS item_found, i.kind AS item_kind, i.name AS item_name,
       i.species AS item_species, i.unit AS item_unit, i.region AS item_region,
       i.status AS item_status, i.budget AS item_budget, i.taken AS item_taken,
       i.cost_g AS item_cost_g, pa.id AS partner_id, pa.name AS partner_name,
       me.balance_g AS user_balance_g,
       coalesce(me.row_version <> CAST(snap.xmin AS text), FALSE) AS raced
FROM (VALUES (1)) AS one (x)
LEFT JOIN catalog_items i ON i.id = :item
LEFT JOIN partners pa ON pa.id = i.partner_id
LEFT JOIN prior ON TRUE
LEFT JOIN payer_locked me ON TRUE
LEFT JOIN users snap ON snap.id = :user
LEFT JOIN planted ON TRUE
LEFT JOIN payer ON TRUE
"""  # noqa: S608 (composed from constant fragments; values travel as parameters)

REDEEM = Statement(_REDEEM_SQL, row=Redemption)


async def redeem(
    pg: Pg,
    *,
    planting_id: uuid.UUID,
    user_id: uuid.UUID,
    item_id: uuid.UUID,
    quantity: int,
    key: str | None,
    fresh_after: datetime,
    rules_version: int,
    now: datetime,
) -> Redemption | None:
    """Redeem in ONE statement (see :data:`REDEEM`): replay what ``key`` already made, or lock
    the balance, take the budget, debit, write the planting and book the burn — or refuse,
    changing nothing. None when a concurrent request with the same key planted first (its
    planting committed while this one waited): running it again answers with that planting."""
    try:
        return await pg.fetch_one(
            REDEEM,
            id=planting_id,
            user=user_id,
            item=item_id,
            quantity=quantity,
            key=key,
            fresh_after=fresh_after,
            version=rules_version,
            now=now,
            year=f"{now.year:04d}",
            at=history_at(now),
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == KEY_INDEX:
            return None
        raise


# a cancelled planting's energy back from system:burned, each user entry's balance running in
# planting order (``moves``/``credited`` of :meth:`PlantingRepository.cancel_and_refund`)
_REFUND = book(
    "moves m",
    amount="m.cost_g",
    debit=system(BURNED),
    credit=user("m.user_id", balance_after=running_balance("cr.balance_g", "m.total", "m.running")),
    reason="'refund'",
    ref="'planting:' || m.id",
    rules_version="CAST(:version AS integer)",
    joins="JOIN credited cr ON cr.id = m.user_id",
)


class PlantingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[RowMapping]:
        return list((await self.session.execute(text(sql), params)).mappings())

    async def _row(self, sql: str, params: dict[str, Any]) -> RowMapping | None:
        return (await self.session.execute(text(sql), params)).mappings().first()

    # --- catalog ------------------------------------------------------------------------------

    async def insert_item(self, values: dict[str, Any]) -> uuid.UUID:
        stmt = insert(table_of(CatalogItem)).values(**values).returning(table_of(CatalogItem).c.id)
        item_id: uuid.UUID = (await self.session.execute(stmt)).scalar_one()
        return item_id

    async def items(self) -> list[RowMapping]:
        return await self._rows(
            f"SELECT {_ITEM_COLUMNS} FROM catalog_items i JOIN partners pa ON pa.id = i.partner_id "  # noqa: S608
            "ORDER BY CASE i.kind WHEN 'tree' THEN 0 WHEN 'conservation' THEN 1 ELSE 2 END, "
            "i.cost_g, i.name, i.id",
            {},
        )

    async def item(self, item_id: uuid.UUID) -> RowMapping | None:
        return await self._row(
            f"SELECT {_ITEM_COLUMNS} FROM catalog_items i JOIN partners pa ON pa.id = i.partner_id "  # noqa: S608
            "WHERE i.id = :id",
            {"id": item_id},
        )

    async def item_by_name(self, partner_id: uuid.UUID, name: str) -> RowMapping | None:
        return await self._row(
            f"SELECT {_ITEM_COLUMNS} FROM catalog_items i JOIN partners pa ON pa.id = i.partner_id "  # noqa: S608
            "WHERE i.partner_id = :partner AND i.name = :name ORDER BY i.created_at LIMIT 1",
            {"partner": partner_id, "name": name},
        )

    async def update_item(
        self, item_id: uuid.UUID, values: dict[str, Any], now: datetime
    ) -> bool | None:
        """Apply ``values``; None if there is no such item, False if the new budget would fall
        below what is already taken (checked in the same statement as the write)."""
        assignments = ", ".join(f"{column} = :{column}" for column in values)
        row = await self._row(
            f"UPDATE catalog_items SET {assignments}, updated_at = :now "  # noqa: S608 (columns are schema fields)
            "WHERE id = :id "
            "AND (CAST(:budget AS bigint) IS NULL OR CAST(:budget AS bigint) >= taken) "
            "RETURNING id",
            {**values, "budget": values.get("budget"), "id": item_id, "now": now},
        )
        if row is not None:
            return True
        exists = await self._row("SELECT 1 FROM catalog_items WHERE id = :id", {"id": item_id})
        return None if exists is None else False

    async def partner_for_item(self, partner_id: uuid.UUID) -> RowMapping | None:
        return await self._row(
            "SELECT id, name, scopes, disabled_at FROM partners WHERE id = :id", {"id": partner_id}
        )

    # --- plantings ----------------------------------------------------------------------------

    async def planting(self, user_id: uuid.UUID, planting_id: uuid.UUID) -> RowMapping | None:
        return await self._row(
            f"SELECT {_PLANTING_COLUMNS}, u.handle, u.display_name FROM plantings p "  # noqa: S608
            "JOIN catalog_items i ON i.id = p.item_id JOIN partners pa ON pa.id = p.partner_id "
            "JOIN users u ON u.id = p.user_id WHERE p.user_id = :user AND p.id = :id",
            {"user": user_id, "id": planting_id},
        )

    async def plantings(
        self, user_id: uuid.UUID, before_seq: int | None, limit: int, status: str | None
    ) -> list[RowMapping]:
        """Newest first; ``limit + 1`` rows, to know whether another page exists."""
        return await self._rows(
            f"SELECT {_PLANTING_COLUMNS} FROM plantings p "  # noqa: S608
            "JOIN catalog_items i ON i.id = p.item_id JOIN partners pa ON pa.id = p.partner_id "
            "WHERE p.user_id = :user AND (CAST(:before AS bigint) IS NULL OR p.seq < :before) "
            "AND (CAST(:status AS text) IS NULL OR p.status = CAST(:status AS text)) "
            "ORDER BY p.seq DESC LIMIT :limit",
            {"user": user_id, "before": before_seq, "status": status, "limit": limit + 1},
        )

    async def all_plantings(self, user_id: uuid.UUID) -> list[RowMapping]:
        """Every planting of the user, oldest first, with the ``Idempotency-Key`` it still
        remembers (their data export)."""
        return await self._rows(
            f"SELECT {_PLANTING_COLUMNS}, p.idempotency_key FROM plantings p "  # noqa: S608
            "JOIN catalog_items i ON i.id = p.item_id JOIN partners pa ON pa.id = p.partner_id "
            "WHERE p.user_id = :user ORDER BY p.seq",
            {"user": user_id},
        )

    async def forget_keys_of(self, user_id: uuid.UUID) -> None:
        """Drop the ``Idempotency-Key`` of every planting of the user (erasure)."""
        await self.session.execute(
            text(
                "UPDATE plantings SET idempotency_key = NULL "
                "WHERE user_id = :user AND idempotency_key IS NOT NULL"
            ),
            {"user": user_id},
        )

    async def forget_keys_before(self, cutoff: datetime) -> int:
        """Drop the ``Idempotency-Key`` of plantings made before ``cutoff`` (worker job; the
        partial unique index holds just the remembered keys, so this reads only those)."""
        result: Any = await self.session.execute(
            text(
                "UPDATE plantings SET idempotency_key = NULL "
                "WHERE idempotency_key IS NOT NULL AND created_at <= :cutoff"
            ),
            {"cutoff": cutoff},
        )
        return int(result.rowcount or 0)

    async def count_trees(self, user_id: uuid.UUID) -> int:
        value = (
            await self.session.execute(
                text(
                    "SELECT coalesce(sum(quantity), 0) FROM plantings WHERE user_id = :user "
                    "AND kind = 'tree' AND status <> 'cancelled'"
                ),
                {"user": user_id},
            )
        ).scalar_one()
        return int(value)

    # --- orders -------------------------------------------------------------------------------

    async def batching_lock(self, *, wait: bool) -> bool:
        """One order-cutting run at a time across processes (transaction-scoped lock)."""
        if wait:
            await self.session.execute(text("SELECT pg_advisory_xact_lock(hashtext('canopy:cut'))"))
            return True
        got = await self.session.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtext('canopy:cut'))")
        )
        return bool(got.scalar_one())

    async def reserved_groups(self) -> list[RowMapping]:
        return await self._rows(
            "SELECT partner_id, item_id, sum(quantity) AS units, min(created_at) AS oldest "
            "FROM plantings WHERE status = 'reserved' GROUP BY partner_id, item_id "
            "ORDER BY min(created_at)",
            {},
        )

    async def lock_reserved(self, partner_id: uuid.UUID, item_id: uuid.UUID) -> list[RowMapping]:
        return await self._rows(
            "SELECT id, quantity, certificate_number, created_at FROM plantings "
            "WHERE status = 'reserved' AND partner_id = :partner AND item_id = :item "
            "ORDER BY seq FOR UPDATE",
            {"partner": partner_id, "item": item_id},
        )

    async def insert_order(self, values: dict[str, Any]) -> None:
        await self.session.execute(
            text(
                "INSERT INTO planting_orders (id, partner_id, item_id, quantity, planted_quantity, "
                "status, created_at, updated_at) "
                "VALUES (:id, :partner_id, :item_id, :quantity, 0, 'open', :now, :now)"
            ),
            values,
        )

    async def assign_to_order(
        self, planting_ids: Sequence[uuid.UUID], order_id: uuid.UUID, now: datetime
    ) -> None:
        await self.session.execute(
            text(
                f"UPDATE plantings SET status = 'ordered', order_id = :order, updated_at = :now, "  # noqa: S608
                f"{_APPEND_HISTORY} WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {
                "order": order_id,
                "ids": list(planting_ids),
                "now": now,
                "status": "ordered",
                "at": history_at(now),
            },
        )

    async def orders(
        self,
        *,
        partner_id: uuid.UUID | None,
        status: str | None,
        before_seq: int | None,
        limit: int,
    ) -> list[RowMapping]:
        """Newest first; ``limit + 1`` rows."""
        return await self._rows(
            f"SELECT {_ORDER_COLUMNS} FROM planting_orders o "  # noqa: S608
            "JOIN catalog_items i ON i.id = o.item_id JOIN partners pa ON pa.id = o.partner_id "
            "WHERE (CAST(:partner AS uuid) IS NULL OR o.partner_id = :partner) "
            "AND (CAST(:status AS text) IS NULL OR o.status = CAST(:status AS text)) "
            "AND (CAST(:before AS bigint) IS NULL OR o.seq < :before) "
            "ORDER BY o.seq DESC LIMIT :limit",
            {"partner": partner_id, "status": status, "before": before_seq, "limit": limit + 1},
        )

    async def order(
        self, order_id: uuid.UUID, partner_id: uuid.UUID | None = None, *, lock: bool = False
    ) -> RowMapping | None:
        """One order (only if it is ``partner_id``'s, when given); ``lock`` takes its row lock,
        which serialises acknowledging, reporting, verifying and cancelling one order."""
        return await self._row(
            f"SELECT {_ORDER_COLUMNS} FROM planting_orders o "  # noqa: S608
            "JOIN catalog_items i ON i.id = o.item_id JOIN partners pa ON pa.id = o.partner_id "
            "WHERE o.id = :id AND (CAST(:partner AS uuid) IS NULL OR o.partner_id = :partner)"
            + (" FOR UPDATE OF o" if lock else ""),
            {"id": order_id, "partner": partner_id},
        )

    async def certificates(self, order_ids: Sequence[uuid.UUID]) -> list[RowMapping]:
        return await self._rows(
            "SELECT order_id, certificate_number, quantity FROM plantings "
            "WHERE order_id = ANY(CAST(:ids AS uuid[])) ORDER BY seq",
            {"ids": list(order_ids)},
        )

    async def reports(self, order_ids: Sequence[uuid.UUID]) -> list[RowMapping]:
        return await self._rows(
            "SELECT id, order_id, planted_quantity, planted_on, lat, lon, evidence_urls, note, "
            "created_at FROM order_reports WHERE order_id = ANY(CAST(:ids AS uuid[])) ORDER BY seq",
            {"ids": list(order_ids)},
        )

    async def update_order(self, order_id: uuid.UUID, now: datetime, **values: Any) -> None:
        assignments = "".join(f", {column} = :{column}" for column in values)
        await self.session.execute(
            text(f"UPDATE planting_orders SET updated_at = :now{assignments} WHERE id = :id"),  # noqa: S608
            {**values, "id": order_id, "now": now},
        )

    async def insert_report(self, values: dict[str, Any]) -> None:
        await self.session.execute(insert(table_of(OrderReport)).values(**values))

    async def move_plantings(
        self, order_id: uuid.UUID, from_statuses: Sequence[str], to_status: str, now: datetime
    ) -> list[RowMapping]:
        """Move an order's plantings on (appending to their history); the moved rows."""
        return await self._rows(
            f"UPDATE plantings SET status = CAST(:status AS text), updated_at = :now, "  # noqa: S608
            f"{_APPEND_HISTORY} "
            "WHERE order_id = :order AND status = ANY(CAST(:from AS text[])) "
            "RETURNING id, user_id, quantity, cost_g, certificate_number, "
            "location_lat, location_lon, planted_on",
            {
                "order": order_id,
                "from": list(from_statuses),
                "status": to_status,
                "now": now,
                "at": history_at(now),
            },
        )

    async def order_plantings(self, order_id: uuid.UUID) -> list[RowMapping]:
        return await self._rows(
            "SELECT id, quantity FROM plantings WHERE order_id = :order ORDER BY seq",
            {"order": order_id},
        )

    async def plant(
        self, places: Sequence[tuple[uuid.UUID, float, float, date]], now: datetime
    ) -> list[RowMapping]:
        """Mark plantings planted, each at its own location and date (one statement)."""
        return await self._rows(
            f"UPDATE plantings AS p SET status = 'planted', updated_at = :now, "  # noqa: S608
            f"location_lat = t.lat, location_lon = t.lon, planted_on = t.planted_on, "
            f"{_APPEND_HISTORY} "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:lats AS float8[]), CAST(:lons AS float8[]), "
            "CAST(:dates AS date[])) AS t(id, lat, lon, planted_on) "
            "WHERE p.id = t.id AND p.status IN ('ordered', 'acknowledged') "
            "RETURNING p.id, p.user_id, p.quantity, p.certificate_number, p.location_lat, "
            "p.location_lon, p.planted_on",
            {
                "ids": [p[0] for p in places],
                "lats": [p[1] for p in places],
                "lons": [p[2] for p in places],
                "dates": [p[3] for p in places],
                "now": now,
                "status": "planted",
                "at": history_at(now),
            },
        )

    async def lock_order_users(self, order_id: uuid.UUID) -> None:
        """Lock the balances a cancellation will credit (a grove's planting: every member's), in
        id order (no deadlock between two cancellations sharing users)."""
        await self.session.execute(
            text(
                "SELECT id FROM users WHERE id IN (SELECT user_id FROM plantings "
                "WHERE order_id = :order UNION SELECT m.user_id FROM plantings p "
                "JOIN groves g ON g.planting_id = p.id "
                "JOIN grove_members m ON m.grove_id = g.id WHERE p.order_id = :order) "
                "ORDER BY id FOR UPDATE"
            ),
            {"order": order_id},
        )

    async def cancel_and_refund(
        self, order_id: uuid.UUID, now: datetime, rules_version: int
    ) -> list[RowMapping]:
        """Cancel an order's open plantings and give each its energy back from
        ``system:burned`` (a grove's planting to each member, their share): plantings,
        balances and both ledger sides in ONE statement, with each user entry's
        ``balance_after_g`` running in planting order."""
        return await self._rows(
            f"""
            WITH cancelled AS (
                UPDATE plantings SET status = 'cancelled', updated_at = :now, {_APPEND_HISTORY}
                WHERE order_id = :order AND status IN ('reserved', 'ordered', 'acknowledged')
                RETURNING id, seq, user_id, quantity, cost_g, certificate_number
            ), shares AS (
                -- who gets what back: the planting's user, or each member of the grove that
                -- planted it what they put in
                SELECT c.id, c.seq, coalesce(m.user_id, c.user_id) AS user_id, c.quantity,
                       coalesce(m.contributed_g, c.cost_g) AS cost_g, c.certificate_number
                FROM cancelled c LEFT JOIN groves g ON g.planting_id = c.id
                LEFT JOIN grove_members m ON m.grove_id = g.id AND m.contributed_g > 0
            ), per_user AS (
                SELECT user_id, CAST(sum(cost_g) AS bigint) AS grams FROM shares
                GROUP BY user_id
            ), credited AS (
                UPDATE users u SET balance_g = u.balance_g + per_user.grams
                FROM per_user WHERE u.id = per_user.user_id
                RETURNING u.id, u.balance_g
            ), moves AS MATERIALIZED (
                SELECT c.*, pu.grams AS total,
                       CAST(sum(c.cost_g) OVER (PARTITION BY c.user_id ORDER BY c.seq) AS bigint)
                           AS running
                FROM shares c JOIN per_user pu ON pu.user_id = c.user_id
            ), entries AS ({_REFUND})
            SELECT id, user_id, quantity, cost_g, certificate_number FROM moves ORDER BY seq
            """,  # noqa: S608 (only constant fragments are interpolated)
            {
                "order": order_id,
                "now": now,
                "version": rules_version,
                "status": "cancelled",
                "at": history_at(now),
            },
        )

    # --- webhook outbox -----------------------------------------------------------------------

    async def enqueue_event(
        self,
        *,
        delivery_id: uuid.UUID,
        event_id: str,
        partner_id: uuid.UUID,
        type: str,
        body: str,
        now: datetime,
    ) -> None:
        """Write the event in the caller's transaction (the outbox). A partner without a webhook
        URL reads its orders through the API instead: its events are kept as ``skipped``."""
        await self.session.execute(
            text(
                "INSERT INTO webhook_deliveries (id, event_id, partner_id, type, body, status, "
                "attempts, next_attempt_at, created_at) "
                "SELECT :id, :event_id, pa.id, :type, :body, "
                "CASE WHEN pa.webhook_url IS NULL THEN 'skipped' ELSE 'pending' END, 0, :now, :now "
                "FROM partners pa WHERE pa.id = :partner"
            ),
            {
                "id": delivery_id,
                "event_id": event_id,
                "partner": partner_id,
                "type": type,
                "body": body,
                "now": now,
            },
        )

    async def claim_deliveries(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[RowMapping]:
        """Claim due deliveries for one attempt each: skip rows another worker holds, take a
        lease, count the attempt and record it as started — one statement. A worker that dies
        before finishing leaves the lease to run out; the delivery is then claimed again."""
        return await self._rows(
            """
            WITH due AS (
                SELECT id FROM webhook_deliveries
                WHERE status = 'pending' AND next_attempt_at <= :now
                  AND (lease_until IS NULL OR lease_until <= :now)
                ORDER BY next_attempt_at LIMIT :limit
                FOR UPDATE SKIP LOCKED
            ), started AS (
                INSERT INTO webhook_attempts (delivery_id, number, url, started_at)
                SELECT d.id, d.attempts + 1, pa.webhook_url, :now
                FROM webhook_deliveries d JOIN due ON due.id = d.id
                JOIN partners pa ON pa.id = d.partner_id
                RETURNING id, delivery_id
            ), claimed AS (
                UPDATE webhook_deliveries d
                SET attempts = d.attempts + 1, lease_until = :lease, current_attempt_id = s.id,
                    last_attempt_at = :now
                FROM started s WHERE d.id = s.delivery_id
                RETURNING d.id, d.event_id, d.type, d.body, d.partner_id, d.attempts,
                          s.id AS attempt_id
            )
            SELECT c.*, pa.webhook_url, pa.webhook_secret_encrypted,
                   coalesce(e.disabled_at, pa.disabled_at) AS endpoint_disabled_at
            FROM claimed c JOIN partners pa ON pa.id = c.partner_id
            LEFT JOIN webhook_endpoints e ON e.partner_id = c.partner_id
            """,
            {"now": now, "lease": lease_until, "limit": limit},
        )

    async def finish_attempt(
        self,
        *,
        delivery_id: uuid.UUID,
        attempt_id: int,
        finished_at: datetime,
        status_code: int | None,
        error: str | None,
        duration_ms: int,
        outcome: str,
        next_attempt_at: datetime | None,
    ) -> None:
        """Record how an attempt ended and move the delivery on — unless the lease was lost
        meanwhile (another worker owns the delivery now; the attempt is still recorded)."""
        await self.session.execute(
            text(
                "UPDATE webhook_attempts SET finished_at = :at, status_code = :code, "
                "error = :error, duration_ms = :ms WHERE id = :attempt"
            ),
            {
                "at": finished_at,
                "code": status_code,
                "error": error,
                "ms": duration_ms,
                "attempt": attempt_id,
            },
        )
        await self.session.execute(
            text(
                "UPDATE webhook_deliveries SET status = CAST(:outcome AS text), "
                "lease_until = NULL, last_status_code = :code, last_error = :error, "
                "next_attempt_at = coalesce(:next, next_attempt_at), "
                "delivered_at = CASE WHEN CAST(:outcome AS text) = 'delivered' THEN :at "
                "ELSE delivered_at END "
                "WHERE id = :id AND current_attempt_id = :attempt"
            ),
            {
                "outcome": outcome,
                "code": status_code,
                "error": error,
                "next": next_attempt_at,
                "at": finished_at,
                "id": delivery_id,
                "attempt": attempt_id,
            },
        )

    async def disable_endpoint(self, partner_id: uuid.UUID, reason: str, now: datetime) -> None:
        await self.session.execute(
            text(
                "INSERT INTO webhook_endpoints (partner_id, disabled_at, disabled_reason, "
                "updated_at) VALUES (:partner, :now, :reason, :now) "
                "ON CONFLICT (partner_id) DO UPDATE SET disabled_at = :now, "
                "disabled_reason = :reason, updated_at = :now"
            ),
            {"partner": partner_id, "reason": reason, "now": now},
        )

    async def deliveries(
        self, status: str | None, partner_id: uuid.UUID | None, before_seq: int | None, limit: int
    ) -> list[RowMapping]:
        """Newest first; ``limit + 1`` rows."""
        return await self._rows(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries d "  # noqa: S608
            "JOIN partners pa ON pa.id = d.partner_id "
            "WHERE (CAST(:status AS text) IS NULL OR d.status = CAST(:status AS text)) "
            "AND (CAST(:partner AS uuid) IS NULL OR d.partner_id = :partner) "
            "AND (CAST(:before AS bigint) IS NULL OR d.seq < :before) "
            "ORDER BY d.seq DESC LIMIT :limit",
            {"status": status, "partner": partner_id, "before": before_seq, "limit": limit + 1},
        )

    async def delivery(self, delivery_id: uuid.UUID) -> RowMapping | None:
        return await self._row(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries d "  # noqa: S608
            "JOIN partners pa ON pa.id = d.partner_id WHERE d.id = :id",
            {"id": delivery_id},
        )

    async def requeue_failed(self, delivery_id: uuid.UUID, now: datetime) -> uuid.UUID | None:
        """A failed delivery starts a new round of attempts now; its partner's endpoint is
        enabled again (an operator retrying says the partner fixed it). The partner's id."""
        row = await self._row(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, "
            "next_attempt_at = :now, lease_until = NULL "
            "WHERE id = :id AND status = 'failed' RETURNING partner_id",
            {"id": delivery_id, "now": now},
        )
        if row is None:
            return None
        partner_id: uuid.UUID = row["partner_id"]
        await self.session.execute(
            text(
                "UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, "
                "updated_at = :now WHERE partner_id = :partner AND disabled_at IS NOT NULL"
            ),
            {"partner": partner_id, "now": now},
        )
        return partner_id

    # --- stats --------------------------------------------------------------------------------

    async def stats_totals(self) -> RowMapping:
        row = await self._row(
            "SELECT (SELECT count(*) FROM users WHERE erased_at IS NULL) AS users, "
            "(SELECT coalesce(sum(co2e_avoided_g), 0) FROM users) AS co2e_avoided_g, "
            "(SELECT coalesce(-sum(amount_g), 0) FROM ledger_entries "
            " WHERE account = 'system:minted') AS energy_minted_g, "
            "(SELECT coalesce(sum(cost_g), 0) FROM plantings WHERE status <> 'cancelled') "
            " AS energy_burned_g, "
            "(SELECT coalesce(sum(quantity), 0) FROM plantings "
            " WHERE kind = 'tree' AND status = 'verified') AS trees_verified",
            {},
        )
        assert row is not None
        return row

    async def plantings_by_status(self) -> dict[str, int]:
        rows = await self.session.execute(
            text("SELECT status, count(*) FROM plantings GROUP BY status")
        )
        return {status: int(count) for status, count in rows}

    async def partner_stats(self) -> list[RowMapping]:
        """Every partner with something in the catalog, with what it has planted."""
        return await self._rows(
            """
            SELECT pa.id, pa.name,
                   coalesce(p.plantings, 0) AS plantings,
                   coalesce(p.trees_planted, 0) AS trees_planted,
                   coalesce(p.trees_verified, 0) AS trees_verified,
                   coalesce(p.area_m2_planted, 0) AS area_m2_planted,
                   coalesce(o.orders, 0) AS orders
            FROM partners pa
            LEFT JOIN (
                SELECT partner_id,
                       count(*) FILTER (WHERE status <> 'cancelled') AS plantings,
                       sum(quantity) FILTER (WHERE kind = 'tree'
                           AND status IN ('planted', 'verified')) AS trees_planted,
                       sum(quantity) FILTER (WHERE kind = 'tree' AND status = 'verified')
                           AS trees_verified,
                       sum(quantity) FILTER (WHERE kind = 'conservation'
                           AND status IN ('planted', 'verified')) AS area_m2_planted
                FROM plantings GROUP BY partner_id
            ) p ON p.partner_id = pa.id
            LEFT JOIN (
                SELECT partner_id, count(*) FILTER (WHERE status <> 'cancelled') AS orders
                FROM planting_orders GROUP BY partner_id
            ) o ON o.partner_id = pa.id
            WHERE EXISTS (SELECT 1 FROM catalog_items i WHERE i.partner_id = pa.id)
            ORDER BY pa.created_at, pa.id
            """,
            {},
        )
