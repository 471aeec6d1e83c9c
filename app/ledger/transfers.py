"""Moving a user's own balance out through the ledger, atomically (watering, buying props,
rewards, donations), and refunds back in.

One statement debits the balance only if it covers the amount and writes both ledger sides, so
two concurrent spends of the same energy cannot both succeed."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict
from app.ledger.booking import Side, book, user


class InsufficientEnergy(Conflict):
    code, title = "insufficient_energy", "Not enough energy"


_DEBIT_TO_SYSTEM = text(
    f"""
    WITH payer AS (
        UPDATE users SET balance_g = balance_g - :amount
        WHERE id = :user AND balance_g >= :amount
        RETURNING balance_g
    ), entries AS ({
        book(
            "payer",
            amount=":amount",
            debit=user(":user", balance_after="payer.balance_g"),
            credit=Side(":account"),
            reason=":reason",
            ref=":ref",
            rules_version=":version",
        )
    })
    SELECT balance_g FROM payer
    """  # noqa: S608 (composed from this package's constant fragments)
)


async def debit_to_system(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    amount_g: int,
    account: str,
    reason: str,
    ref: str,
    rules_version: int,
    now: datetime,
) -> int:
    """Move ``amount_g`` from the user's balance to a system account (e.g. ``system:burned``);
    the new balance, or :class:`InsufficientEnergy`."""
    balance = (
        await session.execute(
            _DEBIT_TO_SYSTEM,
            {
                "user": user_id,
                "amount": amount_g,
                "account": account,
                "reason": reason,
                "ref": ref,
                "version": rules_version,
                "now": now,
            },
        )
    ).scalar()
    if balance is None:
        raise InsufficientEnergy(f"This needs {amount_g} g of energy")
    return int(balance)


_CREDIT_FROM_SYSTEM = text(
    f"""
    WITH payee AS (
        UPDATE users SET balance_g = balance_g + :amount WHERE id = :user RETURNING balance_g
    ), entries AS ({
        book(
            "payee",
            amount=":amount",
            debit=Side(":account"),
            credit=user(":user", balance_after="payee.balance_g"),
            reason=":reason",
            ref=":ref",
            rules_version=":version",
        )
    })
    SELECT balance_g FROM payee
    """  # noqa: S608 (composed from this package's constant fragments)
)


async def credit_from_system(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    amount_g: int,
    account: str,
    reason: str,
    ref: str,
    rules_version: int,
    now: datetime,
) -> int:
    """Move ``amount_g`` from a system account back into the user's balance (a refund from
    ``system:burned``); the new balance."""
    balance = (
        await session.execute(
            _CREDIT_FROM_SYSTEM,
            {
                "user": user_id,
                "amount": amount_g,
                "account": account,
                "reason": reason,
                "ref": ref,
                "version": rules_version,
                "now": now,
            },
        )
    ).scalar_one()
    return int(balance)
