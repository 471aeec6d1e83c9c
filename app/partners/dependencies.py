"""``PartnerDep`` and scope checks for partner API keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.core.db import SessionDep
from app.core.deps import bearer_token
from app.core.errors import Forbidden, Unauthorized
from app.core.security import digest
from app.partners.keys import PartnerKey, PartnerKeys
from app.partners.models import Partner
from app.partners.repository import PartnersRepository
from app.partners.schemas import Scope

partner_bearer = HTTPBearer(
    auto_error=False, scheme_name="PartnerKey", description="partner API key"
)


async def current_partner(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(partner_bearer)],
) -> Partner:
    token = bearer_token(credentials)
    partner = await PartnersRepository(session).by_key_hash(digest(token)) if token else None
    if partner is None:
        raise Unauthorized("A valid partner API key is required")
    return partner


PartnerDep = Annotated[Partner, Depends(current_partner)]


def partner_with_scope(scope: Scope) -> Callable[[Partner], Awaitable[Partner]]:
    """A dependency giving the calling partner if its key carries ``scope`` (else 403)."""

    async def dependency(partner: PartnerDep) -> Partner:
        if scope.value not in partner.scopes:
            raise Forbidden(f"This API key lacks the '{scope.value}' scope")
        return partner

    return dependency


async def verified_partner(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(partner_bearer)],
) -> PartnerKey:
    """The calling partner for hot routes: the key checked against the process's verified keys
    (:mod:`app.partners.keys`), a query only the first time a process sees a key."""
    token = bearer_token(credentials)
    keys: PartnerKeys = request.app.state.partner_keys
    partner = await keys.verify(digest(token)) if token else None
    if partner is None:
        raise Unauthorized("A valid partner API key is required")
    return partner


VerifiedPartner = Annotated[PartnerKey, Depends(verified_partner)]


def verified_partner_with_scope(scope: Scope) -> Callable[[PartnerKey], Awaitable[PartnerKey]]:
    """:func:`partner_with_scope` for hot routes (no query once the key is known)."""

    async def dependency(partner: VerifiedPartner) -> PartnerKey:
        if scope.value not in partner.scopes:
            raise Forbidden(f"This API key lacks the '{scope.value}' scope")
        return partner

    return dependency
