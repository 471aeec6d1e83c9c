"""API shapes for rewards, code pools and redemptions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.planting.schemas import Budget, CostG, NoControl, Reason, Text120

RewardKind = Literal["voucher", "transit_ride", "merchant_discount", "bank_benefit", "other"]
RewardStatus = Literal["available", "closed"]
Fulfilment = Literal["codes", "partner"]
LimitPeriod = Literal["day", "week", "month", "year", "ever"]
RedemptionStatus = Literal["issued", "pending", "failed"]
Description = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), NoControl
]
Code = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoControl
]
PerUserLimit = Annotated[int, Field(ge=1, le=1_000_000)]
# a partner answers within a minute at the earliest, within 30 days at the latest
TimeoutSeconds = Annotated[int, Field(ge=60, le=30 * 86400)]


class _Window(BaseModel):
    @model_validator(mode="after")
    def _ordered(self) -> _Window:
        start, end = getattr(self, "valid_from", None), getattr(self, "valid_until", None)
        if start is not None and end is not None and end <= start:
            raise ValueError("valid_until must be after valid_from")
        return self


class RewardCreate(_Window):
    model_config = ConfigDict(extra="forbid")

    name: Text120
    kind: RewardKind
    cost_g: CostG
    partner_id: uuid.UUID
    budget: Budget = Field(description="redemptions the partner will honour")
    per_user_limit: PerUserLimit | None = None
    limit_period: LimitPeriod = Field(
        "ever", description="the user's local period per_user_limit counts in"
    )
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    fulfilment: Fulfilment
    fulfil_timeout_s: TimeoutSeconds | None = Field(
        None,
        description="partner fulfilment: seconds before an unanswered redemption is failed and "
        "refunded (default: the rules' rewards.fulfil_timeout)",
    )
    description: Description | None = None
    status: RewardStatus = "available"


class RewardPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text120 | None = None
    description: Description | None = None
    budget: Budget | None = None
    per_user_limit: PerUserLimit | None = None
    valid_until: AwareDatetime | None = None
    fulfil_timeout_s: TimeoutSeconds | None = None
    status: RewardStatus | None = None


class RewardOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    kind: RewardKind
    cost_g: int
    partner_id: uuid.UUID
    partner_name: str
    remaining: int = Field(description="redemptions left (for a code pool: codes left too)")
    per_user_limit: int | None
    limit_period: LimitPeriod
    valid_from: datetime | None
    valid_until: datetime | None
    fulfilment: Fulfilment


class RewardList(BaseModel):
    rewards: list[RewardOut]


class RewardAdminOut(RewardOut):
    budget: int
    taken: int
    codes_free: int
    fulfil_timeout_s: int | None
    status: RewardStatus
    created_at: datetime
    updated_at: datetime


class RewardAdminList(BaseModel):
    rewards: list[RewardAdminOut]


class CodesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    codes: Annotated[list[Code], Field(min_length=1, max_length=10_000)]


class CodesAdded(BaseModel):
    added: int = Field(description="codes new to the pool (a code already there is kept once)")
    codes_free: int


class RedemptionOut(BaseModel):
    id: uuid.UUID
    reward_id: uuid.UUID
    reward_name: str
    reward_kind: RewardKind
    partner_id: uuid.UUID
    status: RedemptionStatus
    code: str | None
    cost_g: int
    created_at: datetime
    deadline: datetime | None = Field(description="pending: when it is refunded if unanswered")
    fulfilled_at: datetime | None
    failed_at: datetime | None
    failure_reason: str | None


class RedemptionCreated(RedemptionOut):
    balance_g: int = Field(description="your balance after the redemption")


class RedemptionPage(BaseModel):
    redemptions: list[RedemptionOut]
    next_cursor: str | None


class FulfilIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code | None = None


class FailIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


__all__ = [
    "Budget",
    "CodesAdded",
    "CodesIn",
    "CostG",
    "FailIn",
    "FulfilIn",
    "RedemptionCreated",
    "RedemptionOut",
    "RedemptionPage",
    "RewardAdminList",
    "RewardAdminOut",
    "RewardCreate",
    "RewardList",
    "RewardOut",
    "RewardPatch",
]
