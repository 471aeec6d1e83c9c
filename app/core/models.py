"""Shared table-model plumbing: the naming convention and column helpers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import MetaData, Table
from sqlalchemy.types import DateTime
from sqlmodel import Field, SQLModel

# Every constraint gets a predictable name, so migrations can drop and alter them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLModel.metadata = MetaData(naming_convention=NAMING_CONVENTION)
metadata = SQLModel.metadata


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def ts_field(
    *, nullable: bool = False, index: bool = False, default: datetime | None = None
) -> Any:
    """A ``timestamptz`` column (timezone-aware datetimes in Python)."""
    return Field(default=default, sa_type=DateTime(timezone=True), nullable=nullable, index=index)


def table_of(model: type[SQLModel]) -> Table:
    """The Core ``Table`` of a table model, typed (for set-based statements)."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table
