"""API shapes of the social game: friend forests and takes, watering, props, feed, boards."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.energy.schemas import CollectIn, CollectOut, ForestUser, Trees
from app.game.stealing.service import ViewerStatus


class FriendBallOut(BaseModel):
    id: uuid.UUID
    kind: str
    amount_g: int
    remaining_g: int
    created_at: datetime
    ripens_at: datetime
    expires_at: datetime
    state: Literal["growing", "ripe"]
    rules_version: int
    viewer_status: ViewerStatus
    collectible_g: int


class PropOut(BaseModel):
    type: str
    count: int
    active_until: datetime | None


class FriendForestOut(BaseModel):
    now: datetime
    user: ForestUser
    balls: list[FriendBallOut]
    shield_until: datetime | None
    props: list[PropOut]
    trees: Trees


FriendCollectIn = CollectIn
FriendCollectOut = CollectOut


class WaterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_g: Annotated[int, Field(gt=0, le=1_000_000)]


class WaterOut(BaseModel):
    watered_g: int
    balance_g: int


class PropList(BaseModel):
    props: list[PropOut]


class PropUsed(BaseModel):
    type: str
    active_until: datetime


class PropBought(BaseModel):
    type: str
    count: int
    balance_g: int


class PropGrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID
    type: Annotated[str, Field(min_length=1, max_length=32)]
    count: Annotated[int, Field(ge=1, le=1000)]


class PropGranted(BaseModel):
    user_id: uuid.UUID
    type: str
    count: int


class Actor(BaseModel):
    id: uuid.UUID
    handle: str | None


class FeedItemOut(BaseModel):
    id: str
    type: str
    actor: Actor | None
    amount_g: int | None
    ref: str | None
    data: dict[str, object] | None = None
    at: datetime


class FeedPage(BaseModel):
    items: list[FeedItemOut]
    next_cursor: str | None


class BoardEntry(BaseModel):
    rank: int
    id: uuid.UUID
    handle: str | None
    energy_g: int


class BoardMe(BaseModel):
    rank: int
    energy_g: int


class Board(BaseModel):
    period: Literal["day", "week", "total"]
    entries: list[BoardEntry]
    me: BoardMe
