"""A user's redemptions in their data export, and what erasure takes from them.

Redemptions stay (the ledger and partners' budgets count them) but the codes handed to the
user go: a code is the user's own. Importing this module registers both.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.privacy import ERASE_EXTENSIONS, EXPORT_EXTENSIONS
from app.core.pagination import MAX_LIMIT
from app.rewards.repository import RewardsRepository


async def export_redemptions(session: AsyncSession, user_id: uuid.UUID) -> dict[str, Any]:
    repo = RewardsRepository(session)
    rows: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        page = await repo.redemptions(user_id=user_id, before_seq=before, limit=MAX_LIMIT)
        rows += [
            {
                "id": str(r["id"]),
                "reward_id": str(r["reward_id"]),
                "reward_name": r["reward_name"],
                "status": r["status"],
                "cost_g": r["cost_g"],
                "has_code": r["code_encrypted"] is not None,
                "created_at": r["created_at"].isoformat(),
            }
            for r in page[:MAX_LIMIT]
        ]
        if len(page) <= MAX_LIMIT:
            return {"redemptions": rows}
        before = page[MAX_LIMIT - 1]["seq"]


async def erase_codes(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await RewardsRepository(session).forget_codes_of(user_id)


if export_redemptions not in EXPORT_EXTENSIONS:
    EXPORT_EXTENSIONS.append(export_redemptions)
if erase_codes not in ERASE_EXTENSIONS:
    ERASE_EXTENSIONS.append(erase_codes)
