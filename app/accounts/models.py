"""Users, their logins (sessions) and refresh tokens."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

from app.core.models import new_id, ts_field


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("balance_g >= 0", name="balance_not_negative"),
        CheckConstraint("collected_total_g >= 0", name="collected_not_negative"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    # NULL once the account is erased, which frees the handle for someone else
    handle: str | None = Field(default=None, sa_type=String(32), unique=True)
    password_hash: str | None = Field(default=None, sa_type=String(255))
    display_name: str | None = Field(default=None, sa_type=String(64))
    timezone: str = Field(sa_type=String(64))
    region: str | None = Field(default=None, sa_type=String(64))
    # a change of region applies from the user's next local day (``region_from``); events of
    # earlier days keep the region in force when their day began (``region_previous``)
    region_previous: str | None = Field(default=None, sa_type=String(64))
    region_from: date | None = Field(default=None, sa_type=Date)
    # the ledger is the truth; these are kept in the same transaction as its entries for fast reads
    balance_g: int = Field(default=0, sa_type=BigInteger)
    collected_total_g: int = Field(default=0, sa_type=BigInteger)
    co2e_avoided_g: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()
    erased_at: datetime | None = ts_field(nullable=True)


class AuthSession(SQLModel, table=True):
    """One login: the family of refresh tokens that descend from one sign-in."""

    __tablename__ = "auth_sessions"
    # every process reloads the logins revoked within the access-token lifetime each second
    __table_args__ = (
        Index(
            "ix_auth_sessions_revoked_at",
            "revoked_at",
            postgresql_where=text("revoked_at IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(
        sa_column=Column(
            UUID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    created_at: datetime = ts_field()
    refreshed_at: datetime = ts_field()
    revoked_at: datetime | None = ts_field(nullable=True)
    revoked_reason: str | None = Field(default=None, sa_type=String(32))


class RefreshToken(SQLModel, table=True):
    __tablename__ = "refresh_tokens"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    session_id: uuid.UUID = Field(
        sa_column=Column(
            UUID, ForeignKey("auth_sessions.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    # SHA-256 of the token; the token itself is never stored
    token_hash: str = Field(sa_type=String(64), unique=True)
    created_at: datetime = ts_field()
    expires_at: datetime = ts_field(index=True)
    used_at: datetime | None = ts_field(nullable=True)
