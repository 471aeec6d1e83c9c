"""API shapes for partners."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


class Scope(StrEnum):
    activities = "activities"
    orders = "orders"
    rewards = "rewards"  # fulfils redemptions of its partner-fulfilled rewards


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    return value


WebhookURL = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_check_url)]


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public_address(text: str) -> bool:
    """A literal address a webhook may be sent to: globally routable, and so is any IPv4
    address it carries inside (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64
    ``64:ff9b::/96`` — each a way to reach 127.0.0.1 or 10.0.0.0/8 through an IPv6 literal)."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if not address.is_global:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None and not inner.is_global:
            return False
    return True


def is_private_host(host: str) -> bool:
    """Loopback, private, link-local and other non-public literal addresses (and localhost)."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost") or name.endswith(".local"):
        return True
    try:
        return not is_public_address(name)
    except ValueError:
        return False  # a DNS name: checked again when delivering, against what it resolves to


PartnerName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Scopes = Annotated[list[Scope], Field(min_length=1, max_length=8)]
KindName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Kinds = Annotated[
    list[KindName],
    Field(
        max_length=256,
        description="activity kinds this partner may report (each must trust partners in the "
        'rules); absent or null: every kind whose rules sources include "partner"',
    ),
]


class PartnerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PartnerName
    scopes: Scopes
    webhook_url: WebhookURL | None = None
    kinds: Kinds | None = None


class PartnerUpdate(BaseModel):
    """What ``PATCH`` changes: only the fields sent (``kinds: null`` → every partner kind)."""

    model_config = ConfigDict(extra="forbid")

    name: PartnerName | None = None
    scopes: Scopes | None = None
    webhook_url: WebhookURL | None = None
    kinds: Kinds | None = None


class PartnerPublic(BaseModel):
    id: uuid.UUID
    name: str
    scopes: list[str]
    webhook_url: str | None
    kinds: list[str] | None = Field(
        description="activity kinds it may report; null: every kind whose sources trust partners"
    )
    api_key_prefix: str = Field(description="first characters of the key, to tell keys apart")
    created_at: datetime


class PartnerCreated(PartnerPublic):
    api_key: str = Field(description="shown once")
    webhook_secret: str = Field(description="whsec_… for verifying webhooks; shown once")


class PartnerKeyRotated(PartnerPublic):
    api_key: str = Field(description="shown once; the previous key stops working now")


class PartnerList(BaseModel):
    partners: list[PartnerPublic]


class PartnerSelf(BaseModel):
    id: uuid.UUID
    name: str
    scopes: list[str]
    kinds: list[str] | None = None
