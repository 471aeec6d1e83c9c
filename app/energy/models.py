"""Energy tables: activities, step days, cap counters, energy balls and the ledger.

Every hot table carries ``user_id`` first in its key, so PostgreSQL can be distributed by user
(Citus) without reshaping the schema.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field, SQLModel

from app.core.models import new_id, ts_field


class Activity(SQLModel, table=True):
    """An accepted low-carbon activity and exactly what its energy was computed from."""

    __tablename__ = "activities"

    user_id: uuid.UUID = Field(primary_key=True)
    # "client" or "partner:<partner id>": the same event id from two sources is two events
    source: str = Field(primary_key=True, sa_type=String(64))
    external_id: str = Field(primary_key=True, sa_type=String(128))
    kind: str = Field(sa_type=String(64))
    occurred_at: datetime = ts_field()
    received_at: datetime = ts_field()
    quantity: Decimal | None = Field(default=None, sa_type=Numeric(18, 6))
    unit: str | None = Field(default=None, sa_type=String(32))
    attributes: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    region: str | None = Field(default=None, sa_type=String(64))
    # the factor used: grams per event, or grams per unit
    factor_g: Decimal = Field(sa_type=Numeric(18, 6))
    # no foreign key: versions are immutable and never deleted, and a per-row check would make
    # every writer share a lock on the same few rules_versions rows (see the 6b1d2e3f4a51
    # migration)
    rules_version: int = Field(sa_column=Column(Integer, nullable=False))
    computed_g: int = Field(sa_type=BigInteger)  # what the activity was worth before caps
    energy_g: int = Field(sa_type=BigInteger)  # what was minted after caps
    status: str = Field(sa_type=String(16))  # minted | capped
    ball_id: uuid.UUID | None = None


class StepDay(SQLModel, table=True):
    """A user's cumulative step total for one local date; minted once after the date ends."""

    __tablename__ = "step_days"

    user_id: uuid.UUID = Field(primary_key=True)
    day: date = Field(primary_key=True, sa_type=Date)
    steps: int = Field(sa_type=BigInteger)
    source: str | None = Field(default=None, sa_type=String(64))
    updated_at: datetime = ts_field()
    minted_at: datetime | None = ts_field(nullable=True)
    energy_g: int | None = Field(default=None, sa_type=BigInteger)
    ball_id: uuid.UUID | None = None
    rules_version: int | None = None


class CapCounter(SQLModel, table=True):
    """How much of a kind a user has minted in one local day or month (what caps count).

    One small row per (user, kind, period): concurrent events of one user for one kind lock it,
    which is what makes "50 events racing for the last slot mint it once" hold."""

    __tablename__ = "cap_counters"
    __table_args__ = (CheckConstraint("period IN ('day', 'month')", name="period_known"),)

    user_id: uuid.UUID = Field(primary_key=True)
    kind: str = Field(primary_key=True, sa_type=String(64))
    period: str = Field(primary_key=True, sa_type=String(8))
    period_start: date = Field(primary_key=True, sa_type=Date)
    count: int = Field(default=0, sa_type=Integer)
    grams: int = Field(default=0, sa_type=BigInteger)
    # the day's units in total, for kinds whose day is bounded in units (km, steps)
    units: Decimal = Field(
        default=Decimal(0), sa_type=Numeric(18, 6), sa_column_kwargs={"server_default": "0"}
    )


class CarbonMonth(SQLModel, table=True):
    """The personal carbon account: what a user's activities avoided in one local month, per
    kind and per rules version (and region override) that valued them. Kept by the ingest
    statement itself (one upsert per batch), so ``GET /v1/me/carbon`` reads a year in one small
    query instead of scanning activities; ``events`` and ``co2e_g`` always equal the count and
    the sum of ``energy_g`` of the user's activities they cover."""

    __tablename__ = "carbon_months"
    __table_args__ = (CheckConstraint("events >= 0 AND co2e_g >= 0", name="not_negative"),)

    user_id: uuid.UUID = Field(primary_key=True)
    month: date = Field(primary_key=True, sa_type=Date)  # the first day of the local month
    kind: str = Field(primary_key=True, sa_type=String(64))
    rules_version: int = Field(primary_key=True, sa_type=Integer)
    # the region override that valued the events ('' for the kind's defaults): its method and
    # source may differ from the kind's
    region: str = Field(primary_key=True, sa_type=String(64))
    events: int = Field(default=0, sa_type=BigInteger)
    co2e_g: int = Field(default=0, sa_type=BigInteger)


class EnergyBall(SQLModel, table=True):
    """Minted energy waiting to be collected. Its state is derived from time and remaining_g:
    growing before ``ripens_at``, ripe until ``expires_at``, then expired; collected at 0."""

    __tablename__ = "energy_balls"
    __table_args__ = (
        CheckConstraint("remaining_g >= 0 AND remaining_g <= amount_g", name="remaining_in_range"),
        CheckConstraint("amount_g > 0", name="amount_positive"),
        CheckConstraint("ripens_at < expires_at", name="ripens_before_expiry"),
        Index("ix_energy_balls_user_live", "user_id", "expires_at"),
        Index(
            "ix_energy_balls_expiry_due",
            "expires_at",
            postgresql_where=text("remaining_g > 0 AND expired_at IS NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(
        sa_column=Column(UUID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    kind: str = Field(sa_type=String(64))
    ref: str = Field(sa_type=String(200))  # what minted it: activity:<source>:<id>, steps:<date>
    amount_g: int = Field(sa_type=BigInteger)
    remaining_g: int = Field(sa_type=BigInteger)
    stealable: bool = True
    created_at: datetime = ts_field()
    ripens_at: datetime = ts_field()
    expires_at: datetime = ts_field()
    expired_at: datetime | None = ts_field(nullable=True)  # when the expiry was booked
    expired_g: int = Field(default=0, sa_type=BigInteger)  # what expiry took (then remaining 0)
    stolen_g: int = Field(default=0, sa_type=BigInteger)  # what friends took, for the owner floor
    # no foreign key: versions are immutable and never deleted, and a per-row check would make
    # every writer share a lock on the same few rules_versions rows (see the 6b1d2e3f4a51
    # migration)
    rules_version: int = Field(sa_column=Column(Integer, nullable=False))


class LedgerEntry(SQLModel, table=True):
    """One side of a double-entry transfer. Every transfer is two entries that sum to zero.

    Accounts: ``user`` (a user's balance), ``ball`` (a ball's remaining energy, owned by its user),
    and system accounts ``system:minted`` / ``system:expired`` / ``system:burned`` whose totals are
    derived by summing, never kept in a single hot row."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index(
            "ix_ledger_entries_user_account",
            "user_id",
            "id",
            postgresql_where=text("account = 'user'"),
        ),
        Index("ix_ledger_entries_ball", "ball_id", postgresql_where=text("ball_id IS NOT NULL")),
        Index("ix_ledger_entries_transfer", "transfer_id"),
        # leaderboard rebuilds: what users collected since a day or week began
        # a user's collected energy since a day or week began (leaderboard refresh after a collect)
        Index(
            "ix_ledger_entries_user_collected_at",
            "user_id",
            "at",
            postgresql_where=text("account = 'user' AND reason IN ('collect', 'steal')"),
        ),
        Index(
            "ix_ledger_entries_collected_at",
            "at",
            postgresql_where=text("account = 'user' AND reason IN ('collect', 'steal')"),
        ),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True)
    )
    transfer_id: uuid.UUID
    account: str = Field(sa_type=String(32))
    user_id: uuid.UUID | None = None  # the user owning the account (user or ball); NULL for system
    ball_id: uuid.UUID | None = None
    amount_g: int = Field(sa_type=BigInteger)  # signed: + into this account, - out of it
    balance_after_g: int | None = Field(default=None, sa_type=BigInteger)  # user accounts
    reason: str = Field(
        sa_type=String(32)
    )  # mint | collect | steal | water | expire | burn | refund
    ref: str = Field(sa_type=String(200))
    # no foreign key: versions are immutable and never deleted, and a per-row check would make
    # every writer share a lock on the same few rules_versions rows (see the 6b1d2e3f4a51
    # migration)
    rules_version: int = Field(sa_column=Column(Integer, nullable=False))
    at: datetime = ts_field()
