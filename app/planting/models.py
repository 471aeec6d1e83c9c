"""Planting tables: catalog items, plantings, orders and their reports, webhook outbox.

A planting belongs to a user (``user_id`` leads its user-facing index, so the table can be
distributed by user); orders and deliveries belong to a partner.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlmodel import Field, SQLModel

from app.core.models import new_id, ts_field

ITEM_KINDS = ("tree", "conservation", "virtual")
ITEM_STATUSES = ("coming", "available", "sold_out", "closed")
PLANTING_STATUSES = (
    "reserved",
    "ordered",
    "acknowledged",
    "planted",
    "verified",
    "cancelled",
    "completed",
)
ORDER_STATUSES = ("open", "acknowledged", "planted", "verified", "cancelled")
DELIVERY_STATUSES = ("pending", "delivered", "failed", "skipped")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _fk(target: str, *, nullable: bool = False, index: bool = False) -> Any:
    column = Column(UUID(as_uuid=True), ForeignKey(target), nullable=nullable, index=index)
    return Field(default=None, sa_column=column) if nullable else Field(sa_column=column)


def _seq() -> Any:
    """A bigint identity: the stable order behind cursors and certificate numbers."""
    return Field(
        default=None,
        sa_column=Column(BigInteger, Identity(), nullable=False, unique=True),
    )


class CatalogItem(SQLModel, table=True):
    """Something energy can be redeemed for, with a seasonal budget (in units) never oversold:
    ``taken`` only grows in the same statement that checks it against ``budget``."""

    __tablename__ = "catalog_items"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ITEM_KINDS), name="kind_known"),
        CheckConstraint(_one_of("status", ITEM_STATUSES), name="status_known"),
        CheckConstraint("cost_g > 0", name="cost_positive"),
        CheckConstraint("taken >= 0 AND taken <= budget", name="taken_within_budget"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    kind: str = Field(sa_type=String(16))
    name: str = Field(sa_type=String(120))
    species: str | None = Field(default=None, sa_type=String(120))
    unit: str = Field(sa_type=String(16))  # tree | m2 | item
    cost_g: int = Field(sa_type=BigInteger)  # per unit
    region: str = Field(sa_type=String(120))
    partner_id: uuid.UUID = _fk("partners.id", index=True)
    season: str | None = Field(default=None, sa_type=String(64))
    budget: int = Field(sa_type=BigInteger)  # units the partner can deliver this season
    taken: int = Field(default=0, sa_type=BigInteger)  # units redeemed so far
    status: str = Field(sa_type=String(16))  # as set by operators; sold_out is also derived
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()


class Planting(SQLModel, table=True):
    """A user's redemption: energy burned, a certificate issued, and its way to the ground."""

    __tablename__ = "plantings"
    __table_args__ = (
        CheckConstraint(_one_of("status", PLANTING_STATUSES), name="status_known"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("cost_g > 0", name="cost_positive"),
        Index("ix_plantings_user_id_seq", "user_id", "seq"),
        Index(
            "ix_plantings_reserved",
            "partner_id",
            "item_id",
            "seq",
            postgresql_where=text("status = 'reserved'"),
        ),
        Index("ix_plantings_order_id", "order_id", postgresql_where=text("order_id IS NOT NULL")),
        # a retried POST /v1/plantings finds the planting its Idempotency-Key made
        Index(
            "ix_plantings_user_id_idempotency_key",
            "user_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    seq: int | None = _seq()
    user_id: uuid.UUID = _fk("users.id")
    item_id: uuid.UUID = _fk("catalog_items.id")
    partner_id: uuid.UUID = _fk("partners.id")
    kind: str = Field(sa_type=String(16))  # the item's kind when redeemed
    quantity: int = Field(sa_type=Integer)
    cost_g: int = Field(sa_type=BigInteger)  # what was burned, in total
    status: str = Field(sa_type=String(16))
    certificate_number: str = Field(sa_type=String(32), unique=True)
    order_id: uuid.UUID | None = _fk("planting_orders.id", nullable=True)
    history: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONB)
    location_lat: float | None = Field(default=None, sa_type=Double)
    location_lon: float | None = Field(default=None, sa_type=Double)
    planted_on: date | None = Field(default=None, sa_type=Date)
    rules_version: int = Field(
        sa_column=Column(Integer, ForeignKey("rules_versions.version"), nullable=False)
    )
    # the Idempotency-Key of the request that made it, while that key is remembered
    # (settings.idempotency_ttl); the reply to a retry is rendered again from this row
    idempotency_key: str | None = Field(default=None, sa_type=String(255))
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()


class PlantingOrder(SQLModel, table=True):
    """Reserved plantings of one item, cut into one order for its partner."""

    __tablename__ = "planting_orders"
    __table_args__ = (
        CheckConstraint(_one_of("status", ORDER_STATUSES), name="status_known"),
        CheckConstraint(
            "planted_quantity >= 0 AND planted_quantity <= quantity", name="planted_in_range"
        ),
        Index("ix_planting_orders_partner_id_seq", "partner_id", "seq"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    seq: int | None = _seq()
    partner_id: uuid.UUID = _fk("partners.id")
    item_id: uuid.UUID = _fk("catalog_items.id")
    quantity: int = Field(sa_type=Integer)
    planted_quantity: int = Field(default=0, sa_type=Integer)
    status: str = Field(sa_type=String(16))
    external_ref: str | None = Field(default=None, sa_type=String(200))
    verified_by: str | None = Field(default=None, sa_type=String(200))
    verification_note: str | None = Field(default=None, sa_type=Text)
    cancel_reason: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()
    acknowledged_at: datetime | None = ts_field(nullable=True)
    planted_at: datetime | None = ts_field(nullable=True)
    verified_at: datetime | None = ts_field(nullable=True)
    cancelled_at: datetime | None = ts_field(nullable=True)


class OrderReport(SQLModel, table=True):
    """A partner's planting progress on an order; quantities add up to the order's."""

    __tablename__ = "order_reports"
    __table_args__ = (
        CheckConstraint("planted_quantity > 0", name="quantity_positive"),
        CheckConstraint("lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180", name="location"),
        Index("ix_order_reports_order_id_seq", "order_id", "seq"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    seq: int | None = _seq()
    order_id: uuid.UUID = _fk("planting_orders.id")
    partner_id: uuid.UUID = _fk("partners.id")
    planted_quantity: int = Field(sa_type=Integer)
    planted_on: date = Field(sa_type=Date)
    lat: float = Field(sa_type=Double)
    lon: float = Field(sa_type=Double)
    evidence_urls: list[str] = Field(default_factory=list, sa_type=ARRAY(String(2048)))
    note: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = ts_field()


class WebhookDelivery(SQLModel, table=True):
    """One event for one partner (the outbox row), written in the transaction that caused it.

    ``event_id`` is the ``webhook-id`` of every attempt; ``body`` is the exact bytes sent each
    time. A worker claims a due row by setting ``lease_until`` (``FOR UPDATE SKIP LOCKED``), so
    workers never send the same attempt twice and a worker that dies leaves the row to be
    claimed again once the lease runs out."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_one_of("status", DELIVERY_STATUSES), name="status_known"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_status_seq", "status", "seq"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    seq: int | None = _seq()
    event_id: str = Field(sa_type=String(64), unique=True)
    partner_id: uuid.UUID = _fk("partners.id", index=True)
    type: str = Field(sa_type=String(64))
    body: str = Field(sa_type=Text)
    status: str = Field(sa_type=String(16))
    attempts: int = Field(default=0, sa_type=Integer)  # in the current round (retry resets)
    next_attempt_at: datetime = ts_field()
    lease_until: datetime | None = ts_field(nullable=True)
    current_attempt_id: int | None = Field(default=None, sa_type=BigInteger)
    last_attempt_at: datetime | None = ts_field(nullable=True)
    last_status_code: int | None = Field(default=None, sa_type=Integer)
    last_error: str | None = Field(default=None, sa_type=String(500))
    delivered_at: datetime | None = ts_field(nullable=True)
    created_at: datetime = ts_field()


class WebhookAttempt(SQLModel, table=True):
    """Every attempt, recorded when it starts; one whose worker died keeps ``finished_at`` NULL."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery_id_id", "delivery_id", "id"),)

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True)
    )
    delivery_id: uuid.UUID = _fk("webhook_deliveries.id")
    number: int = Field(sa_type=Integer)
    url: str | None = Field(default=None, sa_type=String(2048))
    started_at: datetime = ts_field()
    finished_at: datetime | None = ts_field(nullable=True)
    status_code: int | None = Field(default=None, sa_type=Integer)
    error: str | None = Field(default=None, sa_type=String(500))
    duration_ms: int | None = Field(default=None, sa_type=Integer)


class WebhookEndpoint(SQLModel, table=True):
    """Delivery state of a partner's webhook URL: a ``410 Gone`` disables it until an operator
    retries a delivery. (The URL itself lives on the partner.)"""

    __tablename__ = "webhook_endpoints"

    partner_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("partners.id"), primary_key=True)
    )
    disabled_at: datetime | None = ts_field(nullable=True)
    disabled_reason: str | None = Field(default=None, sa_type=String(200))
    updated_at: datetime = ts_field()
