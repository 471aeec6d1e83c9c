"""How many balls a reviver revived on one of their local days (the daily limit)."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import Date, Integer
from sqlmodel import Field, SQLModel


class ReviveDay(SQLModel, table=True):
    __tablename__ = "revive_days"

    user_id: uuid.UUID = Field(primary_key=True)  # the reviver
    day: date = Field(primary_key=True, sa_type=Date)  # the reviver's local date
    count: int = Field(default=0, sa_type=Integer)
