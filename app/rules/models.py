"""Published rules versions: immutable, content-hashed, each effective from a moment on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlmodel import Field, SQLModel

from app.core.models import ts_field


class RulesVersion(SQLModel, table=True):
    __tablename__ = "rules_versions"

    version: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(sa_type=String(64), unique=True)
    label: str = Field(sa_type=String(100))
    text: str = Field(sa_type=Text)
    effective_from: datetime = ts_field(index=True)
    created_at: datetime = ts_field()
