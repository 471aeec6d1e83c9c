"""Tables of the social game: friend requests, friendships, blocks, steals, props, waterings.

Friendship is stored in both directions, so "my friends" is one indexed read keyed by the
caller's ``user_id`` (and distributes by user with Citus)."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Date, Index, Integer, SmallInteger, String, text
from sqlmodel import Field, SQLModel

from app.core.models import new_id, ts_field


class FriendRequest(SQLModel, table=True):
    __tablename__ = "friend_requests"
    __table_args__ = (
        Index(
            "ix_friend_requests_pending_pair",
            "from_user_id",
            "to_user_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_friend_requests_to_user_id", "to_user_id", "status"),
        CheckConstraint("from_user_id <> to_user_id", name="not_self"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    from_user_id: uuid.UUID = Field(index=True)
    to_user_id: uuid.UUID
    status: str = Field(sa_type=String(16))  # pending | accepted | declined | cancelled
    created_at: datetime = ts_field()
    responded_at: datetime | None = ts_field(nullable=True)


class Friendship(SQLModel, table=True):
    __tablename__ = "friendships"

    user_id: uuid.UUID = Field(primary_key=True)
    friend_id: uuid.UUID = Field(primary_key=True)
    created_at: datetime = ts_field()


class Block(SQLModel, table=True):
    __tablename__ = "blocks"

    user_id: uuid.UUID = Field(primary_key=True)  # who blocks
    blocked_id: uuid.UUID = Field(primary_key=True, index=True)
    created_at: datetime = ts_field()


class BallSteal(SQLModel, table=True):
    """One take by a friend from a ball. The key makes "once per friend per ball" (twice with a
    double-collect card: n = 2) a constraint, not a hope."""

    __tablename__ = "ball_steals"

    ball_id: uuid.UUID = Field(primary_key=True)
    collector_id: uuid.UUID = Field(primary_key=True)
    n: int = Field(primary_key=True, sa_type=SmallInteger)
    owner_id: uuid.UUID
    amount_g: int = Field(sa_type=BigInteger)
    at: datetime = ts_field()


class Prop(SQLModel, table=True):
    """A user's cards of one type: how many unused, and until when one is active."""

    __tablename__ = "props"
    __table_args__ = (CheckConstraint("count >= 0", name="count_not_negative"),)

    user_id: uuid.UUID = Field(primary_key=True)
    type: str = Field(primary_key=True, sa_type=String(32))
    count: int = Field(default=0, sa_type=Integer)
    active_until: datetime | None = ts_field(nullable=True)


class WateringDay(SQLModel, table=True):
    """How many times a giver watered one friend on the giver's local day."""

    __tablename__ = "watering_days"

    giver_id: uuid.UUID = Field(primary_key=True)
    receiver_id: uuid.UUID = Field(primary_key=True)
    day: date = Field(primary_key=True, sa_type=Date)
    count: int = Field(default=0, sa_type=Integer)


class CollectedScore(SQLModel, table=True):
    """A user's energy collected (own collects and takes) in the current day and week of the
    boards, kept by the collect statements themselves (see ``app.game.leaderboards.scores``);
    the ledger stays the truth this row is restarted from."""

    __tablename__ = "collected_scores"

    user_id: uuid.UUID = Field(primary_key=True)
    day_start: datetime = ts_field()
    day_g: int = Field(default=0, sa_type=BigInteger)
    week_start: datetime = ts_field()
    week_g: int = Field(default=0, sa_type=BigInteger)
