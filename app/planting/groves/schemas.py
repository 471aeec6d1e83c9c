"""API shapes of groves (joint planting)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.accounts.schemas import Handle


class GroveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=80)]


class InviteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    handle: Handle


class ContributeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_g: Annotated[int, Field(gt=0, le=100_000_000)]


class GroveMemberOut(BaseModel):
    user_id: uuid.UUID
    handle: str | None
    display_name: str | None
    contributed_g: int


class GrovePlanting(BaseModel):
    id: uuid.UUID
    status: str
    certificate_number: str


class GroveOut(BaseModel):
    id: uuid.UUID
    name: str
    item_id: uuid.UUID
    item_name: str
    target_g: int
    raised_g: int
    members: list[GroveMemberOut]
    # "disbanded": every member left before it planted (its budget unit went back to the item)
    status: Literal["open", "planted", "disbanded"]
    owner_id: uuid.UUID  # the member the planting is (or will be) booked under
    invited: bool = False  # you are invited, not a member yet (POST .../join)
    planting: GrovePlanting | None = None
    created_at: datetime
    planted_at: datetime | None = None


class GroveList(BaseModel):
    groves: list[GroveOut]


class ContributionOut(BaseModel):
    contributed_g: int  # what was taken: capped at what the grove still needed
    balance_g: int
    grove: GroveOut


class LeftOut(BaseModel):
    refunded_g: int
    balance_g: int
