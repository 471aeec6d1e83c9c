"""``CurrentUser``: the signed-in user behind a bearer access token."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.accounts.models import User
from app.accounts.repository import AccountsRepository
from app.core.db import SessionDep
from app.core.deps import ClockDep, KeysDep, bearer_token
from app.core.errors import Unauthorized

user_bearer = HTTPBearer(
    auto_error=False, scheme_name="UserToken", description="access token from /v1/auth/*"
)


async def current_user(
    request: Request,
    session: SessionDep,
    keys: KeysDep,
    clock: ClockDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(user_bearer)],
) -> User:
    token = bearer_token(credentials)
    claims = keys.decode_access_token(token, now=clock.now()) if token else None
    if claims is None:
        raise Unauthorized("A valid access token is required")
    try:
        user_id, session_id = uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"])
    except (ValueError, TypeError, AttributeError):
        raise Unauthorized("A valid access token is required") from None
    user = await AccountsRepository(session).get_authenticated(user_id, session_id)
    if user is None:
        raise Unauthorized("This login has ended; sign in again")
    request.state.token_issued_at = int(claims.get("iat", 0))
    return user


CurrentUser = Annotated[User, Depends(current_user)]
