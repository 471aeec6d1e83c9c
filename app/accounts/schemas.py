"""API shapes for accounts and auth."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from functools import cache
from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

_HANDLE = re.compile(r"^[a-z0-9_]{3,32}$")
_REGION = re.compile(r"^[a-z0-9_]{1,64}$")


def _normalize_handle(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _check_handle(value: str) -> str:
    if not _HANDLE.match(value):
        raise ValueError("must be 3-32 characters of a-z, 0-9 and _")
    return value


def _check_timezone(value: str) -> str:
    # ZoneInfo alone also accepts oddities like "posixrules"; require a listed IANA name
    if value not in _iana_zones():
        raise ValueError("must be an IANA time zone name such as 'Asia/Shanghai'")
    return value


@cache
def _iana_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _check_region(value: str) -> str:
    if not _REGION.match(value):
        raise ValueError("must be 1-64 characters of a-z, 0-9 and _ (e.g. 'shenzhen')")
    return value


Handle = Annotated[str, BeforeValidator(_normalize_handle), AfterValidator(_check_handle)]
Password = Annotated[str, Field(min_length=8, max_length=256)]
TimeZone = Annotated[str, AfterValidator(_check_timezone)]
Region = Annotated[str, BeforeValidator(_normalize_handle), AfterValidator(_check_region)]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    handle: Handle
    password: Password
    display_name: DisplayName | None = None
    timezone: TimeZone | None = Field(default=None, description="IANA name; default from rules")
    region: Region | None = None


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    handle: Annotated[str, BeforeValidator(_normalize_handle), Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class RefreshIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: Annotated[str, Field(min_length=1, max_length=512)]


class MePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: DisplayName | None = None
    timezone: TimeZone | None = None
    region: Region | None = None


class UserPublic(BaseModel):
    id: uuid.UUID
    handle: str
    display_name: str | None
    timezone: str
    region: str | None
    balance_g: int
    collected_total_g: int
    co2e_avoided_g: int
    created_at: datetime


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="seconds until the access token expires")


class AuthResult(Tokens):
    user: UserPublic
