"""Grove tables: the grove (its item, target and what is raised), members and invitations.

A grove is shared by its members, so it is distributed by its own id with Citus and its members
and invitations colocated with it (see docs/operations.md)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Index, Integer, String
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

from app.core.models import new_id, ts_field

GROVE_STATUSES = ("open", "planted", "disbanded")


class Grove(SQLModel, table=True):
    """Friends pooling energy for one catalog item. It holds one unit of the item's budget from
    its creation, so the item cannot sell out under it; ``raised_g`` only grows up to
    ``target_g`` in the statement that checks it."""

    __tablename__ = "groves"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'planted', 'disbanded')", name="status_known"),
        CheckConstraint("raised_g >= 0 AND raised_g <= target_g", name="raised_within_target"),
        CheckConstraint("target_g > 0", name="target_positive"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(sa_type=String(80))
    owner_id: uuid.UUID  # the member the planting is booked under (the creator while a member)
    item_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("catalog_items.id"), nullable=False)
    )
    target_g: int = Field(sa_type=BigInteger)
    raised_g: int = Field(default=0, sa_type=BigInteger)
    members: int = Field(default=1, sa_type=Integer)
    status: str = Field(sa_type=String(16))
    planting_id: uuid.UUID | None = None
    rules_version: int = Field(sa_type=Integer)
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()
    planted_at: datetime | None = ts_field(nullable=True)


class GroveMember(SQLModel, table=True):
    __tablename__ = "grove_members"
    __table_args__ = (
        CheckConstraint("contributed_g >= 0", name="contributed_not_negative"),
        Index("ix_grove_members_user_id", "user_id"),
    )

    grove_id: uuid.UUID = Field(primary_key=True)
    user_id: uuid.UUID = Field(primary_key=True)
    contributed_g: int = Field(default=0, sa_type=BigInteger)
    joined_at: datetime = ts_field()


class GroveInvite(SQLModel, table=True):
    __tablename__ = "grove_invites"
    __table_args__ = (Index("ix_grove_invites_user_id", "user_id"),)

    grove_id: uuid.UUID = Field(primary_key=True)
    user_id: uuid.UUID = Field(primary_key=True)  # who is invited
    inviter_id: uuid.UUID
    created_at: datetime = ts_field()
