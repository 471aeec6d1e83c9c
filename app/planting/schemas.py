"""API shapes for the catalog, plantings, orders, reports, webhook deliveries and stats."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.partners.schemas import WebhookURL

ItemKind = Literal["tree", "conservation", "virtual"]
ItemStatus = Literal["coming", "available", "sold_out", "closed"]
PlantingStatus = Literal[
    "reserved", "ordered", "acknowledged", "planted", "verified", "cancelled", "completed"
]
OrderStatus = Literal["open", "acknowledged", "planted", "verified", "cancelled"]
DeliveryStatus = Literal["pending", "delivered", "failed", "skipped"]


def _no_control(value: str) -> str:
    """PostgreSQL text cannot hold NUL, and no name or note needs control characters."""
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
        raise ValueError("must not contain control characters")
    return value


NoControl = AfterValidator(_no_control)
Text120 = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120), NoControl
]
Unit = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,16}$")]
CostG = Annotated[int, Field(gt=0, le=1_000_000_000)]
Budget = Annotated[int, Field(ge=0, le=1_000_000_000)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000), NoControl]
Season = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64), NoControl]
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), NoControl
]
ExternalRef = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoControl
]

DEFAULT_UNITS: dict[str, str] = {"tree": "tree", "conservation": "m2", "virtual": "item"}


# --- catalog ---------------------------------------------------------------------------------


class PartnerRef(BaseModel):
    id: uuid.UUID
    name: str


class CatalogItemOut(BaseModel):
    id: uuid.UUID
    kind: ItemKind
    name: str
    species: str | None
    cost_g: int = Field(description="energy per unit")
    unit: str
    region: str
    partner: PartnerRef
    status: ItemStatus
    remaining: int = Field(description="units left in this season's budget")
    season: str | None = None


class CatalogAdminOut(CatalogItemOut):
    budget: int
    taken: int
    created_at: datetime
    updated_at: datetime


class CatalogList(BaseModel):
    items: list[CatalogItemOut]


class CatalogCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ItemKind
    name: Text120
    species: Text120 | None = None
    cost_g: CostG
    unit: Unit | None = Field(default=None, description="default: tree, m2 or item by kind")
    region: Text120
    partner_id: uuid.UUID
    budget: Budget = Field(description="units the partner can deliver this season")
    status: ItemStatus = "available"
    season: Season | None = None


class CatalogPatch(BaseModel):
    """Kind and partner are fixed once plantings may point at the item."""

    model_config = ConfigDict(extra="forbid")

    name: Text120 | None = None
    species: Text120 | None = None
    cost_g: CostG | None = None
    unit: Unit | None = None
    region: Text120 | None = None
    budget: Budget | None = None
    status: ItemStatus | None = None
    season: Season | None = None


# --- plantings -------------------------------------------------------------------------------


class PlantingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    quantity: Annotated[int, Field(ge=1, le=10_000)] = 1


class PlantingItem(BaseModel):
    id: uuid.UUID
    kind: ItemKind
    name: str
    species: str | None
    unit: str
    region: str
    partner: PartnerRef


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


class HistoryEntry(BaseModel):
    status: PlantingStatus
    at: datetime


class PlantingOut(BaseModel):
    id: uuid.UUID
    item: PlantingItem
    quantity: int
    cost_g: int
    status: PlantingStatus
    certificate_number: str
    created_at: datetime
    history: list[HistoryEntry]
    location: Location | None = Field(description="where it was planted, once planted")
    planted_on: date | None


class PlantingCreated(PlantingOut):
    balance_g: int = Field(description="your balance after the energy was burned")


class PlantingPage(BaseModel):
    plantings: list[PlantingOut]
    next_cursor: str | None


# --- orders and reports ----------------------------------------------------------------------


# the webhook URL rules (http(s), a host, no credentials), and no control characters
EvidenceURL = Annotated[WebhookURL, NoControl]


class OrderItem(BaseModel):
    id: uuid.UUID
    name: str
    species: str | None
    region: str
    kind: ItemKind
    unit: str


class Certificate(BaseModel):
    number: str
    quantity: int


class ReportOut(BaseModel):
    id: uuid.UUID
    planted_quantity: int
    planted_on: date
    location: Location
    evidence_urls: list[str]
    note: str | None
    created_at: datetime


class OrderOut(BaseModel):
    id: uuid.UUID
    status: OrderStatus
    item: OrderItem
    quantity: int
    certificates: list[Certificate]
    created_at: datetime
    acknowledged_at: datetime | None
    planted_quantity: int
    reports: list[ReportOut]
    external_ref: str | None
    planted_at: datetime | None
    verified_at: datetime | None
    verified_by: str | None
    cancelled_at: datetime | None
    cancel_reason: str | None


class OrderAdminOut(OrderOut):
    partner: PartnerRef
    verification_note: str | None


class OrderPage(BaseModel):
    orders: list[OrderOut]
    next_cursor: str | None


class OrderAdminPage(BaseModel):
    orders: list[OrderAdminOut]
    next_cursor: str | None


class OrdersCut(BaseModel):
    orders: list[OrderAdminOut]


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_ref: ExternalRef | None = None


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    planted_quantity: Annotated[int, Field(ge=1, le=1_000_000)]
    planted_on: date
    location: Location
    evidence_urls: Annotated[list[EvidenceURL], Field(max_length=20)] = Field(default_factory=list)
    note: Note | None = None


class OrderSummary(BaseModel):
    id: uuid.UUID
    status: OrderStatus
    quantity: int
    planted_quantity: int


class ReportCreated(ReportOut):
    order: OrderSummary


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auditor: Text120
    note: Note | None = None


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


# --- webhook deliveries ----------------------------------------------------------------------


class DeliveryOut(BaseModel):
    id: uuid.UUID
    event_id: str = Field(description="the webhook-id header of every attempt")
    type: str
    partner: PartnerRef
    status: DeliveryStatus
    attempts: int = Field(description="attempts in the current round (a retry starts a new one)")
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryOut]
    next_cursor: str | None


# --- stats -----------------------------------------------------------------------------------


class PlantingCounts(BaseModel):
    reserved: int = 0
    ordered: int = 0
    acknowledged: int = 0
    planted: int = 0
    verified: int = 0
    completed: int = 0
    cancelled: int = 0


class PartnerStats(BaseModel):
    id: uuid.UUID
    name: str
    plantings: int = Field(description="plantings, cancelled ones excluded")
    trees_planted: int = Field(description="trees in the ground (planted or verified)")
    trees_verified: int
    area_m2_planted: int = Field(description="conservation area planted or verified, m²")
    orders: int


class RewardStats(BaseModel):
    """Rewards beyond trees (filled by the rewards domain)."""

    rewards: int = Field(0, description="rewards available")
    redemptions_issued: int = 0
    redemptions_pending: int = 0
    redemptions_failed: int = Field(0, description="failed or timed out, and refunded")
    energy_spent_g: int = Field(0, description="energy redeemed for rewards, net of refunds")


class CampaignStats(BaseModel):
    """Campaigns (filled by the campaigns domain)."""

    campaigns: int = 0
    completed: int = 0
    donated_g: int = 0
    donors: int = 0


class Stats(BaseModel):
    users: int
    energy_minted_g: int
    co2e_avoided_g: int
    energy_burned_g: int = Field(description="energy redeemed for plantings, net of refunds")
    plantings: PlantingCounts = Field(description="plantings by status")
    trees_verified: int
    by_partner: list[PartnerStats]
    rewards: RewardStats = Field(default_factory=RewardStats)
    campaigns: CampaignStats = Field(default_factory=CampaignStats)
