"""/v1/auth/* and /v1/me."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from app.accounts import service
from app.accounts.dependencies import CurrentUser
from app.accounts.schemas import AuthResult, MePatch, RefreshIn, RegisterIn, TokenIn, UserPublic
from app.core.db import SessionDep
from app.core.deps import ClockDep, KeysDep, LimiterDep, RulesDep, SettingsDep
from app.core.idempotency import IdempotencyDep
from app.core.ratelimit import client_address, limit_by_address

auth_router = APIRouter(prefix="/v1/auth", tags=["auth"])
me_router = APIRouter(prefix="/v1/me", tags=["me"])


def _ctx(keys: KeysDep, settings: SettingsDep, clock: ClockDep) -> service.AuthContext:
    return service.AuthContext(keys=keys, settings=settings, now=clock.now())


AuthCtx = Annotated[service.AuthContext, Depends(_ctx)]


@auth_router.post(
    "/register",
    status_code=201,
    response_model=AuthResult,
    dependencies=[Depends(limit_by_address("register"))],
)
async def register(
    payload: RegisterIn, session: SessionDep, ctx: AuthCtx, rules: RulesDep, idem: IdempotencyDep
) -> Response:
    """Create an account; answers the user and a first pair of tokens."""
    return await idem.run(
        owner="anonymous",
        status_code=201,
        produce=lambda: service.register(session, ctx, payload, rules.rules.timezone),
    )


@auth_router.post("/token", response_model=AuthResult)
async def token(
    payload: TokenIn, request: Request, session: SessionDep, ctx: AuthCtx, limiter: LimiterDep
) -> AuthResult:
    """Sign in with handle and password."""
    await limiter.hit("login", payload.handle, client_address(request))
    return await service.sign_in(session, ctx, payload.handle, payload.password)


@auth_router.post(
    "/refresh", response_model=AuthResult, dependencies=[Depends(limit_by_address("login"))]
)
async def refresh(payload: RefreshIn, session: SessionDep, ctx: AuthCtx) -> AuthResult:
    """Swap a refresh token for a new pair. Each refresh token works once."""
    return await service.refresh(session, ctx, payload.refresh_token)


@me_router.get("", response_model=UserPublic)
async def get_me(user: CurrentUser) -> UserPublic:
    return service.user_public(user)


@me_router.patch("", response_model=UserPublic)
async def patch_me(
    patch: MePatch, user: CurrentUser, session: SessionDep, clock: ClockDep
) -> UserPublic:
    updated = await service.update_profile(session, user, patch, clock.now())
    return service.user_public(updated)
