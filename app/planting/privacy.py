"""A user's plantings in their data export, and what erasure takes from them.

A planting holds no personal data besides the user's random id (certificates read the name from
the user, which erasure clears) and, for a day, the ``Idempotency-Key`` of the request that made
it (the client's own string, like the stored replies of other routes). The tree is real, so
plantings stay; erasure drops their keys. Importing this module registers both.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.privacy import ERASE_EXTENSIONS, EXPORT_EXTENSIONS, RELEASE_EXTENSIONS
from app.planting.groves.service import leave_all_open, list_mine
from app.planting.repository import PlantingRepository
from app.planting.service import planting_out


async def export_plantings(session: AsyncSession, user_id: uuid.UUID) -> dict[str, Any]:
    rows = await PlantingRepository(session).all_plantings(user_id)
    return {
        "plantings": [
            planting_out(r).model_dump(mode="json") | {"idempotency_key": r["idempotency_key"]}
            for r in rows
        ]
    }


async def erase_planting_keys(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await PlantingRepository(session).forget_keys_of(user_id)


if export_plantings not in EXPORT_EXTENSIONS:
    EXPORT_EXTENSIONS.append(export_plantings)
if erase_planting_keys not in ERASE_EXTENSIONS:
    ERASE_EXTENSIONS.append(erase_planting_keys)


async def export_groves(session: AsyncSession, user_id: uuid.UUID) -> dict[str, Any]:
    """The groves the user is in or invited to, as ``GET /v1/groves`` shows them."""
    return {"groves": [g.model_dump(mode="json") for g in await list_mine(session, user_id)]}


if export_groves not in EXPORT_EXTENSIONS:
    EXPORT_EXTENSIONS.append(export_groves)


async def release_groves(
    session: AsyncSession, user_id: uuid.UUID, now: datetime, rules_version: int
) -> None:
    """An erased person leaves their open groves: what they put in comes back to their
    balance (which stays, anonymous, with their ledger); the others keep planting."""
    await leave_all_open(session, user_id, rules_version, now)


if release_groves not in RELEASE_EXTENSIONS:
    RELEASE_EXTENSIONS.append(release_groves)
