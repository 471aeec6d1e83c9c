"""Campaign tables: campaigns, each donation, and each donor's total (the leaderboard).

``campaigns.raised_g`` grows only under the campaign's row lock, in the transaction that burns
the donation, and ``completed_at`` is set by the one donation that crossed the goal — so the
``campaign.completed`` webhook is written once, however many donors race past the goal.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

from app.core.models import new_id, ts_field


class Campaign(SQLModel, table=True):
    """A time-boxed goal (a zero-carbon games, a marathon) users donate energy to."""

    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint("goal_g > 0", name="goal_positive"),
        CheckConstraint("raised_g >= 0 AND donors >= 0", name="not_negative"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    seq: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(), nullable=False, unique=True)
    )
    name: str = Field(sa_type=String(120))
    description: str | None = Field(default=None, sa_type=String(500))
    goal_g: int = Field(sa_type=BigInteger)
    raised_g: int = Field(default=0, sa_type=BigInteger)
    donors: int = Field(default=0, sa_type=Integer)
    starts_at: datetime = ts_field()
    ends_at: datetime = ts_field()
    partner_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(UUID(as_uuid=True), ForeignKey("partners.id"), nullable=True),
    )
    completed_at: datetime | None = ts_field(nullable=True)  # when raised_g reached goal_g
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()


class CampaignDonation(SQLModel, table=True):
    """One donation: the energy burned for a campaign."""

    __tablename__ = "campaign_donations"
    __table_args__ = (
        CheckConstraint("amount_g > 0", name="amount_positive"),
        Index("ix_campaign_donations_user_id_created_at", "user_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    seq: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(), nullable=False, unique=True)
    )
    campaign_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("campaigns.id"), nullable=False, index=True)
    )
    user_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("users.id"), nullable=False)
    )
    amount_g: int = Field(sa_type=BigInteger)
    rules_version: int = Field(sa_type=Integer)
    created_at: datetime = ts_field()


class CampaignDonor(SQLModel, table=True):
    """What one user gave one campaign in all (the leaderboard's rows)."""

    __tablename__ = "campaign_donors"
    __table_args__ = (
        CheckConstraint("donated_g > 0", name="donated_positive"),
        Index("ix_campaign_donors_campaign_id_donated_g", "campaign_id", "donated_g"),
    )

    campaign_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("campaigns.id"), primary_key=True)
    )
    user_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("users.id"), primary_key=True)
    )
    donated_g: int = Field(sa_type=BigInteger)
    first_at: datetime = ts_field()
    last_at: datetime = ts_field()
