"""Partners: activity partners (transit, payments) and NGO planting partners."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import LargeBinary, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from app.core.models import new_id, ts_field


class Partner(SQLModel, table=True):
    __tablename__ = "partners"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(sa_type=String(120))
    scopes: list[str] = Field(sa_type=ARRAY(String(32)))
    webhook_url: str | None = Field(default=None, sa_type=String(2048))
    # the activity kinds this partner may report; None: every kind whose sources trust partners
    kinds: list[str] | None = Field(default=None, sa_type=ARRAY(String(64)), nullable=True)
    # SHA-256 of the API key; the key is shown once and never stored
    api_key_hash: str = Field(sa_type=String(64), unique=True)
    api_key_prefix: str = Field(sa_type=String(16))
    # the whsec_ secret is needed to sign webhooks, so it is kept encrypted, not hashed
    webhook_secret_encrypted: bytes = Field(sa_type=LargeBinary)
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()
    disabled_at: datetime | None = ts_field(nullable=True)
