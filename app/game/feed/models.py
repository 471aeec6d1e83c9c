"""The feed: what happened to a user (who collected from them, who watered them, their trees)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.core.models import ts_field


class FeedItem(SQLModel, table=True):
    __tablename__ = "feed_items"
    __table_args__ = (Index("ix_feed_items_user_id_id", "user_id", "id"),)

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True)
    )
    user_id: uuid.UUID  # whose feed
    type: str = Field(sa_type=String(32))
    actor_id: uuid.UUID | None = None  # who did it (a friend), if anyone
    amount_g: int | None = Field(default=None, sa_type=BigInteger)
    ref: str | None = Field(default=None, sa_type=String(200))
    data: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    at: datetime = ts_field()
