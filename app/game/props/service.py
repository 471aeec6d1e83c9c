"""Props (cards): inventory, buying with energy, using (shield, double_collect), granting."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, NotFound
from app.ledger.transfers import debit_to_system
from app.rules.registry import ActiveRules

SHIELD = "shield"
DOUBLE_COLLECT = "double_collect"


class NoPropLeft(Conflict):
    code, title = "no_prop_left", "You have none of these left"


class NotForSale(Conflict):
    code, title = "not_for_sale", "This prop cannot be bought with energy"


@dataclass(frozen=True)
class PropState:
    type: str
    count: int
    active_until: datetime | None


def _known(rules: ActiveRules, prop_type: str) -> None:
    if prop_type not in rules.rules.props:
        raise NotFound(f"No prop type '{prop_type}'")


async def active_until(
    session: AsyncSession, user_id: uuid.UUID, prop_type: str, now: datetime
) -> datetime | None:
    row = await session.execute(
        text(
            "SELECT active_until FROM props WHERE user_id = :u AND type = :t "
            "AND active_until > :now"
        ),
        {"u": user_id, "t": prop_type, "now": now},
    )
    value: datetime | None = row.scalar()
    return value


async def inventory(
    session: AsyncSession, user_id: uuid.UUID, rules: ActiveRules, now: datetime
) -> list[PropState]:
    """Every prop type the rules know, with my count and (if active) until when."""
    rows = await session.execute(
        text("SELECT type, count, active_until FROM props WHERE user_id = :u"), {"u": user_id}
    )
    held = {r[0]: (r[1], r[2]) for r in rows}
    states = []
    for prop_type in sorted(set(rules.rules.props) | set(held)):
        count, until = held.get(prop_type, (0, None))
        states.append(PropState(prop_type, count, until if until and until > now else None))
    return states


async def use(
    session: AsyncSession, user_id: uuid.UUID, prop_type: str, rules: ActiveRules, now: datetime
) -> datetime:
    """Spend one card: active for the rules' duration (extending one still active)."""
    _known(rules, prop_type)
    duration = rules.rules.props[prop_type].duration
    row = await session.execute(
        text(
            "UPDATE props SET count = count - 1, "
            "active_until = GREATEST(coalesce(active_until, :now), :now) + :duration "
            "WHERE user_id = :u AND type = :t AND count > 0 RETURNING active_until"
        ),
        {"u": user_id, "t": prop_type, "now": now, "duration": duration},
    )
    until: datetime | None = row.scalar()
    if until is None:
        raise NoPropLeft(f"You have no {prop_type} left")
    return until


async def add(session: AsyncSession, user_id: uuid.UUID, prop_type: str, count: int) -> int:
    row = await session.execute(
        text(
            "INSERT INTO props AS p (user_id, type, count) VALUES (:u, :t, :n) "
            "ON CONFLICT (user_id, type) DO UPDATE SET count = p.count + EXCLUDED.count "
            "RETURNING count"
        ),
        {"u": user_id, "t": prop_type, "n": count},
    )
    return int(row.scalar_one())


async def buy(
    session: AsyncSession, user_id: uuid.UUID, prop_type: str, rules: ActiveRules, now: datetime
) -> tuple[int, int]:
    """Pay the rules' ``cost_g`` (burned through the ledger) for one card: (count, balance)."""
    _known(rules, prop_type)
    cost = rules.rules.props[prop_type].cost_g
    if cost <= 0:
        raise NotForSale()
    balance = await debit_to_system(
        session,
        user_id=user_id,
        amount_g=cost,
        account="system:burned",
        reason="prop",
        ref=f"prop:{prop_type}",
        rules_version=rules.version,
        now=now,
    )
    return await add(session, user_id, prop_type, 1), balance
