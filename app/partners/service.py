"""Creating partners, their keys and webhook secrets."""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.errors import NotFound, ValidationFailed
from app.core.security import Keys, digest, new_token
from app.partners.models import Partner
from app.partners.repository import PartnersRepository
from app.partners.schemas import (
    PartnerCreate,
    PartnerCreated,
    PartnerKeyRotated,
    PartnerPublic,
    is_private_host,
)

API_KEY_PREFIX = "cnp_"


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def check_webhook_url(url: str | None, settings: Settings) -> None:
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname if url else None
    if host and not settings.webhook_allow_private and is_private_host(host):
        raise ValidationFailed(
            [
                {
                    "loc": ["body", "webhook_url"],
                    "msg": "must not point at a loopback or private address "
                    "(set CANOPY_WEBHOOK_ALLOW_PRIVATE=true for local partners)",
                }
            ]
        )


def partner_public(partner: Partner) -> PartnerPublic:
    return PartnerPublic(
        id=partner.id,
        name=partner.name,
        scopes=partner.scopes,
        webhook_url=partner.webhook_url,
        api_key_prefix=partner.api_key_prefix,
        created_at=partner.created_at,
    )


def webhook_secret(partner: Partner, keys: Keys) -> str:
    return keys.decrypt(partner.webhook_secret_encrypted).decode()


async def create_partner(
    session: AsyncSession, keys: Keys, settings: Settings, payload: PartnerCreate, now: datetime
) -> PartnerCreated:
    """Create a partner; its API key and webhook secret are in this answer and nowhere else."""
    check_webhook_url(payload.webhook_url, settings)
    api_key, secret = new_token(API_KEY_PREFIX), new_webhook_secret()
    partner = await PartnersRepository(session).add(
        Partner(
            id=uuid.uuid4(),
            name=payload.name,
            scopes=sorted({s.value for s in payload.scopes}),
            webhook_url=payload.webhook_url,
            api_key_hash=digest(api_key),
            api_key_prefix=api_key[:12],
            webhook_secret_encrypted=keys.encrypt(secret.encode()),
            created_at=now,
            updated_at=now,
        )
    )
    return PartnerCreated(
        **partner_public(partner).model_dump(), api_key=api_key, webhook_secret=secret
    )


async def rotate_key(
    session: AsyncSession, partner_id: uuid.UUID, now: datetime
) -> PartnerKeyRotated:
    api_key = new_token(API_KEY_PREFIX)
    partner = await PartnersRepository(session).update(
        partner_id, now, api_key_hash=digest(api_key), api_key_prefix=api_key[:12]
    )
    if partner is None:
        raise NotFound("No such partner")
    return PartnerKeyRotated(**partner_public(partner).model_dump(), api_key=api_key)


async def list_partners(session: AsyncSession) -> list[PartnerPublic]:
    return [partner_public(p) for p in await PartnersRepository(session).list()]
