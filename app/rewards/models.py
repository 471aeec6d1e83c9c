"""Reward tables: the catalog of rewards, the operator's code pools, and redemptions.

``rewards.taken`` only grows in the statement that checks it against ``budget`` (under the
reward's row lock), and a code is bound to a redemption once, ever (``redemption_id`` is set
once and never cleared, even when the redemption fails), so budgets are never oversold and no
code is handed out twice.
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
    LargeBinary,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

from app.core.models import new_id, ts_field

REWARD_KINDS = ("voucher", "transit_ride", "merchant_discount", "bank_benefit", "other")
REWARD_STATUSES = ("available", "closed")
FULFILMENTS = ("codes", "partner")
LIMIT_PERIODS = ("day", "week", "month", "year", "ever")
REDEMPTION_STATUSES = ("issued", "pending", "failed")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Reward(SQLModel, table=True):
    """Something a partner gives for energy, with a budget (redemptions) never oversold."""

    __tablename__ = "rewards"
    __table_args__ = (
        CheckConstraint(_one_of("kind", REWARD_KINDS), name="kind_known"),
        CheckConstraint(_one_of("status", REWARD_STATUSES), name="status_known"),
        CheckConstraint(_one_of("fulfilment", FULFILMENTS), name="fulfilment_known"),
        CheckConstraint(_one_of("limit_period", LIMIT_PERIODS), name="limit_period_known"),
        CheckConstraint("cost_g > 0", name="cost_positive"),
        CheckConstraint("taken >= 0 AND taken <= budget", name="taken_within_budget"),
        CheckConstraint("per_user_limit IS NULL OR per_user_limit > 0", name="limit_positive"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    seq: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(), nullable=False, unique=True)
    )
    partner_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("partners.id"), nullable=False, index=True)
    )
    name: str = Field(sa_type=String(120))
    description: str | None = Field(default=None, sa_type=String(500))
    kind: str = Field(sa_type=String(24))
    cost_g: int = Field(sa_type=BigInteger)
    budget: int = Field(sa_type=BigInteger)  # redemptions the partner will honour
    taken: int = Field(default=0, sa_type=BigInteger)  # redemptions not failed
    per_user_limit: int | None = Field(default=None, sa_type=Integer)
    limit_period: str = Field(default="ever", sa_type=String(8))
    valid_from: datetime | None = ts_field(nullable=True)
    valid_until: datetime | None = ts_field(nullable=True)
    fulfilment: str = Field(sa_type=String(8))
    # partner fulfilment: seconds the partner has before the redemption is failed and refunded
    # (NULL: the rules' rewards.fulfil_timeout)
    fulfil_timeout_s: int | None = Field(default=None, sa_type=Integer)
    status: str = Field(default="available", sa_type=String(16))
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()


class RewardCode(SQLModel, table=True):
    """One code of an operator-uploaded pool: stored encrypted, found by its digest (a code
    uploaded twice is kept once), bound to the redemption that received it."""

    __tablename__ = "reward_codes"
    __table_args__ = (
        Index("uq_reward_codes_reward_id_code_hash", "reward_id", "code_hash", unique=True),
        # the next free code of a reward, in upload order
        Index(
            "ix_reward_codes_free",
            "reward_id",
            "id",
            postgresql_where=text("redemption_id IS NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    reward_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("rewards.id"), nullable=False)
    )
    code_hash: str = Field(sa_type=String(64))
    code_encrypted: bytes = Field(sa_type=LargeBinary)
    redemption_id: uuid.UUID | None = Field(default=None, unique=True)
    added_at: datetime = ts_field()
    issued_at: datetime | None = ts_field(nullable=True)


class Redemption(SQLModel, table=True):
    """A user's redemption of a reward: energy burned, budget taken, a code (now, or once the
    partner fulfils), or failed and refunded."""

    __tablename__ = "redemptions"
    __table_args__ = (
        CheckConstraint(_one_of("status", REDEMPTION_STATUSES), name="status_known"),
        CheckConstraint("cost_g > 0", name="cost_positive"),
        Index("ix_redemptions_user_id_seq", "user_id", "seq"),
        # per-user limits and the daily ceiling count a user's recent redemptions
        Index("ix_redemptions_user_id_created_at", "user_id", "created_at"),
        Index("ix_redemptions_partner_id_seq", "partner_id", "seq"),
        # the timeout job finds pending redemptions past their deadline
        Index("ix_redemptions_pending", "deadline", postgresql_where=text("status = 'pending'")),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    seq: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(), nullable=False, unique=True)
    )
    user_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("users.id"), nullable=False)
    )
    reward_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("rewards.id"), nullable=False, index=True)
    )
    partner_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("partners.id"), nullable=False)
    )
    cost_g: int = Field(sa_type=BigInteger)
    status: str = Field(sa_type=String(16))
    code_encrypted: bytes | None = Field(default=None, sa_type=LargeBinary)
    failure_reason: str | None = Field(default=None, sa_type=String(200))
    deadline: datetime | None = ts_field(nullable=True)  # pending: fulfil or fail by then
    rules_version: int = Field(sa_type=Integer)
    created_at: datetime = ts_field()
    fulfilled_at: datetime | None = ts_field(nullable=True)
    failed_at: datetime | None = ts_field(nullable=True)
