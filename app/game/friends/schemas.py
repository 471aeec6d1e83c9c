"""API shapes for friends, requests and blocks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.accounts.schemas import Handle


class FriendRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    handle: Handle


class PersonRef(BaseModel):
    id: uuid.UUID
    handle: str | None


class FriendRequestOut(BaseModel):
    id: uuid.UUID
    status: Literal["pending", "accepted", "declined", "cancelled"]
    created_at: datetime
    from_: PersonRef = Field(alias="from")  # "from" is a Python keyword
    to: PersonRef

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class FriendRequestList(BaseModel):
    requests: list[FriendRequestOut]


class FriendOut(BaseModel):
    id: uuid.UUID
    handle: str | None
    display_name: str | None
    collectible_g: int
    next_collectible_at: datetime | None
    energy_week_g: int
    can_revive: bool = False  # expired energy you could revive now (POST .../revive)


class FriendList(BaseModel):
    friends: list[FriendOut]
