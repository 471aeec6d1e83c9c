"""Watering a friend: energy from my balance into a ball for them, ripe at once, unstealable."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, ValidationFailed
from app.energy.periods import local_date
from app.game.feed.service import WATERED_YOU, NewItem, add_items
from app.ledger.entries import INSERT_ENTRY_COLUMNS
from app.ledger.transfers import InsufficientEnergy
from app.rules.registry import ActiveRules


class DailyLimitReached(Conflict):
    code, title = "daily_limit_reached", "You have watered this friend enough today"


_WATER = text(
    f"""
    WITH giver AS (
        UPDATE users SET balance_g = balance_g - :amount
        WHERE id = :giver AND balance_g >= :amount
        RETURNING balance_g
    ), ball AS (
        INSERT INTO energy_balls (id, user_id, kind, ref, amount_g, remaining_g, stealable,
            created_at, ripens_at, expires_at, expired_at, expired_g, stolen_g, rules_version)
        SELECT :ball, :receiver, 'watering', :ref, :amount, :amount, FALSE, :now, :now,
               :expires, NULL, 0, 0, :version FROM giver
        RETURNING id
    ), entries AS (
        INSERT INTO ledger_entries ({INSERT_ENTRY_COLUMNS})
        SELECT CAST(:transfer AS uuid), 'user', CAST(:giver AS uuid), CAST(:ball AS uuid),
               -CAST(:amount AS bigint), balance_g, 'water', CAST(:ref AS text),
               CAST(:version AS int), CAST(:now AS timestamptz) FROM giver
        UNION ALL
        SELECT CAST(:transfer AS uuid), 'ball', CAST(:receiver AS uuid), CAST(:ball AS uuid),
               CAST(:amount AS bigint), NULL::bigint, 'water', CAST(:ref AS text),
               CAST(:version AS int), CAST(:now AS timestamptz) FROM ball
    )
    SELECT balance_g FROM giver
    """  # noqa: S608 (only the constant column list is interpolated)
)


async def water(
    session: AsyncSession,
    giver_id: uuid.UUID,
    giver_timezone: str,
    receiver_id: uuid.UUID,
    amount_g: int,
    rules: ActiveRules,
    now: datetime,
) -> int:
    """Give ``amount_g`` to a friend (caller checked friendship). Returns my new balance."""
    watering = rules.rules.watering
    if amount_g not in watering.amounts_g:
        raise ValidationFailed(
            [{"loc": ["body", "amount_g"], "msg": f"must be one of {list(watering.amounts_g)}"}]
        )
    day = local_date(now, giver_timezone)
    counted = await session.execute(
        text(
            "INSERT INTO watering_days AS w (giver_id, receiver_id, day, count) "
            "VALUES (:g, :r, :d, 1) ON CONFLICT (giver_id, receiver_id, day) "
            "DO UPDATE SET count = w.count + 1 WHERE w.count < :limit RETURNING count"
        ),
        {"g": giver_id, "r": receiver_id, "d": day, "limit": watering.per_friend_daily_limit},
    )
    if counted.scalar() is None or watering.per_friend_daily_limit == 0:
        raise DailyLimitReached(
            f"At most {watering.per_friend_daily_limit} waterings per friend per day"
        )
    ball_id, transfer = uuid.uuid4(), uuid.uuid4()
    ref = f"water:{giver_id}:{ball_id}"
    balance = (
        await session.execute(
            _WATER,
            {
                "giver": giver_id,
                "receiver": receiver_id,
                "amount": amount_g,
                "ball": ball_id,
                "transfer": transfer,
                "ref": ref,
                "now": now,
                "expires": now + rules.rules.balls.expire_after,
                "version": rules.version,
            },
        )
    ).scalar()
    if balance is None:
        raise InsufficientEnergy(f"Watering needs {amount_g} g of energy")
    await add_items(
        session,
        [NewItem(receiver_id, WATERED_YOU, now, actor_id=giver_id, amount_g=amount_g, ref=ref)],
    )
    return int(balance)
