"""Energy rain tables: sessions (the server's schedule), plays per local day, grants by friends.

Every table leads with the user it belongs to, so they distribute by user with Citus."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, Integer, LargeBinary
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.core.models import ts_field


class RainSession(SQLModel, table=True):
    """One play: the schedule the server drew (``balls``: ``[{id, amount_g, appears_at_ms}]``,
    from ``seed``), when a result is accepted, and what was paid."""

    __tablename__ = "rain_sessions"

    user_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True)
    seed: bytes = Field(sa_type=LargeBinary)
    balls: list[dict[str, Any]] = Field(sa_type=JSONB)
    max_g: int = Field(sa_type=BigInteger)  # the cap in force when the play started
    day: date = Field(sa_type=Date)  # the player's local date the play counts on
    created_at: datetime = ts_field()
    settle_from: datetime = ts_field()  # the rain is over: a result is accepted from here...
    expires_at: datetime = ts_field()  # ...until here
    settled_at: datetime | None = ts_field(nullable=True)
    energy_g: int | None = Field(default=None, sa_type=BigInteger)
    caught: int | None = Field(default=None, sa_type=Integer)  # recognised ball ids
    rules_version: int = Field(sa_type=Integer)


class RainDay(SQLModel, table=True):
    """A user's plays on one local day, and the extra plays friends granted for it."""

    __tablename__ = "rain_days"

    user_id: uuid.UUID = Field(primary_key=True)
    day: date = Field(primary_key=True, sa_type=Date)
    plays: int = Field(default=0, sa_type=Integer)
    extra: int = Field(default=0, sa_type=Integer)


class RainGrant(SQLModel, table=True):
    """A user granted a friend one extra play on the granter's local day (once a day)."""

    __tablename__ = "rain_grants"

    granter_id: uuid.UUID = Field(primary_key=True)
    day: date = Field(primary_key=True, sa_type=Date)
    friend_id: uuid.UUID
    at: datetime = ts_field()
