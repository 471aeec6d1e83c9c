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
    PartnerUpdate,
    is_private_host,
)
from app.rules.schema import Rules

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
        kinds=partner.kinds,
        api_key_prefix=partner.api_key_prefix,
        created_at=partner.created_at,
    )


def webhook_secret(partner: Partner, keys: Keys) -> str:
    return keys.decrypt(partner.webhook_secret_encrypted).decode()


def check_kinds(kinds: list[str] | None, rules: Rules | None) -> list[str] | None:
    """The kinds sorted and deduplicated, each one a kind the rules in force let partners
    report (422 naming the others)."""
    if kinds is None:
        return None
    if rules is None:
        raise ValueError("kinds need the rules in force to be checked")
    wrong = [
        {"loc": ["body", "kinds", i], "msg": f"{kind!r} is not a kind partners may report"}
        for i, kind in enumerate(kinds)
        if kind not in rules.activities or "partner" not in rules.activities[kind].sources
    ]
    if wrong:
        raise ValidationFailed(wrong)
    return sorted(set(kinds))


async def create_partner(
    session: AsyncSession,
    keys: Keys,
    settings: Settings,
    payload: PartnerCreate,
    now: datetime,
    rules: Rules | None = None,
) -> PartnerCreated:
    """Create a partner; its API key and webhook secret are in this answer and nowhere else."""
    check_webhook_url(payload.webhook_url, settings)
    kinds = check_kinds(payload.kinds, rules)
    api_key, secret = new_token(API_KEY_PREFIX), new_webhook_secret()
    partner = await PartnersRepository(session).add(
        Partner(
            id=uuid.uuid4(),
            name=payload.name,
            scopes=sorted({s.value for s in payload.scopes}),
            webhook_url=payload.webhook_url,
            kinds=kinds,
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


async def update_partner(
    session: AsyncSession,
    settings: Settings,
    partner_id: uuid.UUID,
    payload: PartnerUpdate,
    now: datetime,
    rules: Rules,
) -> tuple[PartnerPublic, list[str]]:
    """Change what was sent; the answer and the names of the fields that changed value."""
    sent = payload.model_fields_set
    values: dict[str, object] = {}
    if "name" in sent and payload.name is not None:
        values["name"] = payload.name
    if "scopes" in sent and payload.scopes is not None:
        values["scopes"] = sorted({s.value for s in payload.scopes})
    if "webhook_url" in sent:
        check_webhook_url(payload.webhook_url, settings)
        values["webhook_url"] = payload.webhook_url
    if "kinds" in sent:
        values["kinds"] = check_kinds(payload.kinds, rules)
    repository = PartnersRepository(session)
    before = await repository.get(partner_id)
    if before is None:
        raise NotFound("No such partner")
    changed = [k for k, v in values.items() if getattr(before, k) != v]
    partner = await repository.update(partner_id, now, **values)
    if partner is None:
        raise NotFound("No such partner")
    return partner_public(partner), changed


async def list_partners(session: AsyncSession) -> list[PartnerPublic]:
    return [partner_public(p) for p in await PartnersRepository(session).list()]


def describe_update(updated: PartnerPublic, changed: list[str]) -> str:
    """The audit summary of a partner update: what changed, never a secret."""
    kinds = ", ".join(updated.kinds) if updated.kinds is not None else "every partner kind"
    summary = {
        "name": f"name {updated.name!r}",
        "scopes": f"scopes {', '.join(updated.scopes)}",
        "kinds": f"kinds: {kinds}",
        "webhook_url": "webhook URL changed",
    }
    return "; ".join(summary[field] for field in changed)
