"""Who is calling: ``CurrentPrincipal`` (hot paths: the token alone, no query) and
``CurrentUser`` (cold paths: the user row too).

An access token is verified locally — signature, expiry, and its login not in the process's
revocation set (:mod:`app.accounts.revocations`, which learns of a revocation when it commits) —
so the hot routes spend their one database round trip on their own work."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.accounts.models import User
from app.accounts.repository import AccountsRepository
from app.core.db import SessionDep
from app.core.deps import bearer_token
from app.core.errors import Unauthorized

user_bearer = HTTPBearer(
    auto_error=False, scheme_name="UserToken", description="access token from /v1/auth/*"
)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a verified access token."""

    id: uuid.UUID
    session_id: uuid.UUID
    issued_at: int
    # when the person last signed in with their password (not a refresh)
    auth_time: int


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(user_bearer)],
) -> Principal:
    # keys and clock straight from app.state: every sub-dependency costs each hot request
    state = request.app.state
    token = bearer_token(credentials)
    claims = state.keys.decode_access_token(token, now=state.clock.now()) if token else None
    if claims is None:
        raise Unauthorized("A valid access token is required")
    try:
        principal = Principal(
            uuid.UUID(claims["sub"]),
            uuid.UUID(claims["sid"]),
            int(claims.get("iat", 0)),
            int(claims.get("auth_time", 0)),  # tokens from before the claim: never fresh
        )
    except (ValueError, TypeError, AttributeError):
        raise Unauthorized("A valid access token is required") from None
    if state.revocations.is_revoked(principal.session_id):
        raise Unauthorized("This login has ended; sign in again")
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def current_user(principal: CurrentPrincipal, session: SessionDep, request: Request) -> User:
    user = await AccountsRepository(session).get_authenticated(principal.id, principal.session_id)
    if user is None:
        raise Unauthorized("This login has ended; sign in again")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
