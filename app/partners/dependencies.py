"""``PartnerDep`` and scope checks for partner API keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.core.db import SessionDep
from app.core.deps import bearer_token
from app.core.errors import Forbidden, Unauthorized
from app.core.security import digest
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
