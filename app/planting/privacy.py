"""A user's plantings in their data export.

Erasure needs nothing from planting: a planting holds no personal data besides the user's
random id (certificates read the name from the user, which erasure clears), and the tree is
real, so plantings stay. Importing this module registers the export.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.privacy import EXPORT_EXTENSIONS
from app.planting.repository import PlantingRepository
from app.planting.service import planting_out


async def export_plantings(session: AsyncSession, user_id: uuid.UUID) -> dict[str, Any]:
    rows = await PlantingRepository(session).all_plantings(user_id)
    return {"plantings": [planting_out(r).model_dump(mode="json") for r in rows]}


if export_plantings not in EXPORT_EXTENSIONS:
    EXPORT_EXTENSIONS.append(export_plantings)
