"""Published rules versions: immutable, content-hashed, each effective from a moment on."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import String, Text
from sqlmodel import Field, SQLModel

from app.core.models import ts_field

# who published a version: the configured rules file at start ("file"), the admin API ("api")
# or `canopy rules publish` ("cli")
Source = Literal["file", "api", "cli"]


class RulesVersion(SQLModel, table=True):
    __tablename__ = "rules_versions"

    version: int | None = Field(default=None, primary_key=True)
    # not unique: publishing an earlier text again (a rollback) makes a new version of it
    sha256: str = Field(sa_type=String(64), index=True)
    label: str = Field(sa_type=String(100))
    text: str = Field(sa_type=Text)
    effective_from: datetime = ts_field(index=True)
    created_at: datetime = ts_field()
    # the server default serves the previous release during a rolling deploy (it only ever
    # published the file at start, or through the API, which its audit entries tell apart)
    source: str = Field(
        default="api", sa_type=String(8), sa_column_kwargs={"server_default": "file"}
    )
    # when the configured rules file was last seen holding this version's text: the version
    # with the latest mark is the file's baseline (what the file is compared with at start)
    file_synced_at: datetime | None = ts_field(nullable=True)
