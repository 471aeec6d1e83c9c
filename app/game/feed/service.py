"""Writing and reading feed items. Other domains call :func:`add_items` in their own transaction,
so a feed item exists exactly when the thing it reports happened."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.models import table_of
from app.game.feed.models import FeedItem

# the contract's types; more may be added
COLLECTED_FROM_YOU = "collected_from_you"
WATERED_YOU = "watered_you"
FRIEND_REQUEST = "friend_request"
FRIEND_ACCEPTED = "friend_accepted"
PLANTING_UPDATE = "planting_update"


@dataclass(frozen=True)
class NewItem:
    user_id: uuid.UUID
    type: str
    at: datetime
    actor_id: uuid.UUID | None = None
    amount_g: int | None = None
    ref: str | None = None
    data: dict[str, Any] | None = None


async def add_items(session: AsyncSession, items: list[NewItem]) -> None:
    """Append feed items (one statement for all)."""
    if not items:
        return
    await session.execute(
        insert(table_of(FeedItem)).values(
            [
                {
                    "user_id": i.user_id,
                    "type": i.type,
                    "actor_id": i.actor_id,
                    "amount_g": i.amount_g,
                    "ref": i.ref,
                    "data": i.data,
                    "at": i.at,
                }
                for i in items
            ]
        )
    )


@dataclass(frozen=True)
class FeedRow:
    id: int
    type: str
    actor_id: uuid.UUID | None
    actor_handle: str | None
    amount_g: int | None
    ref: str | None
    data: dict[str, Any] | None
    at: datetime


async def read(
    session: AsyncSession, user_id: uuid.UUID, before_id: int | None, limit: int
) -> list[FeedRow]:
    """Newest first, ``limit + 1`` rows (to know whether another page exists)."""
    rows = await session.execute(
        text(
            "SELECT f.id, f.type, f.actor_id, u.handle, f.amount_g, f.ref, f.data, f.at "
            "FROM feed_items f LEFT JOIN users u ON u.id = f.actor_id "
            "WHERE f.user_id = :user AND (CAST(:before AS bigint) IS NULL OR f.id < :before) "
            "ORDER BY f.id DESC LIMIT :limit"
        ),
        {"user": user_id, "before": before_id, "limit": limit + 1},
    )
    return [FeedRow(*r) for r in rows]
