"""``AdminDep``: the operator's bearer token (``CANOPY_ADMIN_TOKEN``), compared in constant time.
With no token configured the admin API does not exist (404), rather than being open."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.core.deps import SettingsDep, bearer_token
from app.core.errors import NotFound, Unauthorized
from app.core.security import constant_time_equals

admin_bearer = HTTPBearer(
    auto_error=False, scheme_name="AdminToken", description="CANOPY_ADMIN_TOKEN"
)


async def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
) -> None:
    if settings.admin_token is None:
        raise NotFound()
    token = bearer_token(credentials)
    if token is None or not constant_time_equals(token, settings.admin_token.get_secret_value()):
        raise Unauthorized("A valid admin token is required")


AdminDep = Depends(require_admin)
