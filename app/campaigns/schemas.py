"""API shapes for campaigns, donations and their leaderboards."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.planting.schemas import NoControl, Text120

CampaignStatus = Literal["upcoming", "active", "completed", "ended"]
Grams = Annotated[int, Field(gt=0, le=1_000_000_000_000)]
Description = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), NoControl
]


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text120
    goal_g: Grams
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    partner_id: uuid.UUID | None = Field(
        None, description="the sponsoring partner, told by campaign.completed"
    )
    description: Description | None = None

    @model_validator(mode="after")
    def _ordered(self) -> CampaignCreate:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class CampaignOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    goal_g: int
    raised_g: int
    donors: int
    starts_at: datetime
    ends_at: datetime
    status: CampaignStatus = Field(
        description="upcoming; active (taking donations); completed (goal reached — donations "
        "still welcome until ends_at); ended (over without reaching its goal)"
    )
    partner_id: uuid.UUID | None
    completed_at: datetime | None


class CampaignList(BaseModel):
    campaigns: list[CampaignOut]


class DonateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_g: Grams


class DonationCreated(BaseModel):
    donation_id: uuid.UUID
    amount_g: int
    campaign: CampaignOut
    balance_g: int = Field(description="your balance after the donation")
    created_at: datetime


class LeaderboardEntry(BaseModel):
    rank: int
    user_id: uuid.UUID
    display_name: str | None
    donated_g: int


class Leaderboard(BaseModel):
    entries: list[LeaderboardEntry]
    me: LeaderboardEntry | None = Field(description="your place, if you donated")
