"""API shapes for activities, steps, the forest and the ledger."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from app.energy.forest import BallState

EventId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
KindName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Quantity = Annotated[
    Decimal, Field(gt=0, le=Decimal("1000000000"), max_digits=18, decimal_places=6)
]
MAX_BATCH = 500


def _small_json(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and len(str(value)) > 4096:
        raise ValueError("must be at most about 4 KB")
    return value


class ActivityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: EventId = Field(description="client-generated, unique per user: the idempotency key")
    kind: KindName
    occurred_at: AwareDatetime = Field(description="RFC 3339 with an offset")
    quantity: Quantity | None = Field(
        default=None, description="units for per-unit kinds (km, steps)"
    )
    attributes: dict[str, Any] | None = None

    _attrs = field_validator("attributes")(_small_json)


class PartnerActivityIn(ActivityIn):
    user_id: uuid.UUID


def _unique_ids(items: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    for index, item in enumerate(items):
        key = (getattr(item, "user_id", None), item.id)
        if key in seen:
            raise ValueError(f"activity id {item.id!r} appears twice (item {index})")
        seen.add(key)
    return items


class ActivityBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    activities: Annotated[list[ActivityIn], Field(min_length=1, max_length=MAX_BATCH)]

    _unique = field_validator("activities")(_unique_ids)


class PartnerActivityBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    activities: Annotated[list[PartnerActivityIn], Field(min_length=1, max_length=MAX_BATCH)]

    _unique = field_validator("activities")(_unique_ids)


class ActivityResult(BaseModel):
    id: str
    kind: str
    status: Literal["minted", "capped", "duplicate", "rejected"]
    energy_g: int
    ball_id: uuid.UUID | None
    reason: str | None = None
    rules_version: int | None


class ActivityBatchResult(BaseModel):
    results: list[ActivityResult]


class StepsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: Annotated[int, Field(ge=0, le=10_000_000)]
    source: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="e.g. the device or health app"
    )


class StepsResult(BaseModel):
    date: date
    steps: int
    status: Literal["recording", "minted"]
    energy_g: int


class UserRefOut(BaseModel):
    id: uuid.UUID
    handle: str | None


class CollectionOut(BaseModel):
    by: UserRefOut
    amount_g: int
    at: datetime


class BallOut(BaseModel):
    id: uuid.UUID
    kind: str
    amount_g: int
    remaining_g: int
    created_at: datetime
    ripens_at: datetime
    expires_at: datetime
    state: BallState
    stealable: bool
    rules_version: int
    collections: list[CollectionOut]


class ForestUser(BaseModel):
    id: uuid.UUID
    handle: str
    display_name: str | None


class Trees(BaseModel):
    count: int


class ForestOut(BaseModel):
    now: datetime
    user: ForestUser
    balance_g: int
    balls: list[BallOut]
    shield_until: datetime | None = None
    props: list[dict[str, Any]] = Field(default_factory=list)
    trees: Trees


class CollectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ball_ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=500)] | None = None


class CollectResult(BaseModel):
    ball_id: uuid.UUID
    collected_g: int
    status: str


class CollectOut(BaseModel):
    collected_g: int
    balance_g: int
    results: list[CollectResult]


class LedgerEntryOut(BaseModel):
    id: str
    at: datetime
    amount_g: int
    balance_after_g: int
    reason: str
    ref: str
    rules_version: int


class LedgerPage(BaseModel):
    entries: list[LedgerEntryOut]
    next_cursor: str | None


# --- the carbon account ---------------------------------------------------------------------------


class CarbonValuation(BaseModel):
    """The events of a kind valued by one rules version (and region override), with that
    version's methodology: what makes each gram traceable."""

    rules_version: int
    region: str | None = Field(description="the region override that applied; null: defaults")
    events: int
    co2e_g: int
    method: str
    source: str


class CarbonKind(BaseModel):
    kind: str
    events: int
    co2e_g: int
    method: str = Field(description="the methodology of the latest rules version that valued it")
    source: str
    valuations: list[CarbonValuation]


class CarbonMonthOut(BaseModel):
    month: str = Field(description='"YYYY-MM" (the user\'s local month)')
    events: int
    co2e_g: int


class CarbonAccountOut(BaseModel):
    year: int
    total_co2e_g: int
    events: int
    by_kind: list[CarbonKind]
    by_month: list[CarbonMonthOut]
