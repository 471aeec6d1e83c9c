"""/v1/auth/* and /v1/me."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import orjson
from fastapi import APIRouter, BackgroundTasks, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from app.accounts import privacy, service
from app.accounts.dependencies import CurrentPrincipal, CurrentUser
from app.accounts.repository import ME
from app.accounts.schemas import (
    AuthResult,
    MePatch,
    Password,
    RefreshIn,
    RegisterIn,
    TokenIn,
    UserPublic,
)
from app.core.db import SessionDep
from app.core.deps import ClockDep, KeysDep, LimiterDep, RulesDep, SettingsDep
from app.core.errors import Forbidden, Unauthorized
from app.core.idempotency import IdempotencyDep
from app.core.ratelimit import client_address, limit_by_address
from app.core.responses import fields, json_response
from app.core.security import verify_password
from app.core.sql import PgDep
from app.game.leaderboards.service import forget_on_boards

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
    # keys are scoped to the handle asked for: someone else's key never blocks or replays yours
    return await idem.run(
        owner=f"register:{payload.handle}",
        status_code=201,
        produce=lambda: service.register(session, ctx, payload, rules.rules.timezone),
        subject=lambda result: result.user.id,
    )


@auth_router.post("/token", response_model=AuthResult)
async def token(
    payload: TokenIn, request: Request, session: SessionDep, ctx: AuthCtx, limiter: LimiterDep
) -> AuthResult:
    """Sign in with handle and password."""
    # two limits: one handle from many addresses, and one address trying many handles; both
    # answer the same 429 whether the handle exists or not
    await limiter.hit("login", "handle", payload.handle)
    await limiter.hit("login", "address", client_address(request))
    return await service.sign_in(session, ctx, payload.handle, payload.password)


@auth_router.post("/logout", status_code=204)
async def logout(principal: CurrentPrincipal, session: SessionDep, clock: ClockDep) -> Response:
    """End this login: its access and refresh tokens stop working everywhere within a second."""
    await service.sign_out(session, principal.session_id, clock.now())
    return Response(status_code=204)


@auth_router.post(
    "/refresh", response_model=AuthResult, dependencies=[Depends(limit_by_address("login"))]
)
async def refresh(payload: RefreshIn, session: SessionDep, ctx: AuthCtx) -> AuthResult:
    """Swap a refresh token for a new pair. Each refresh token works once."""
    return await service.refresh(session, ctx, payload.refresh_token)


@me_router.get("", response_model=UserPublic)
async def get_me(principal: CurrentPrincipal, pg: PgDep) -> Response:
    """Your account and balances: one statement, rendered from the row."""
    me = await pg.fetch_one(ME, user=principal.id)
    if me is None:
        raise Unauthorized("This login has ended; sign in again")
    return json_response(fields(me))


@me_router.patch("", response_model=UserPublic)
async def patch_me(
    patch: MePatch, user: CurrentUser, session: SessionDep, clock: ClockDep
) -> UserPublic:
    updated = await service.update_profile(session, user, patch, clock.now())
    return service.user_public(updated)


class EraseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str | None = Field(default=None, max_length=256)


class ReauthenticationRequired(Forbidden):
    code, title = "reauthentication_required", "Confirm with your password or a fresh sign-in"


FRESH_TOKEN = timedelta(minutes=5)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    old_password: str = Field(min_length=1, max_length=256)
    new_password: Password


@me_router.post("/password", status_code=204, dependencies=[Depends(limit_by_address("login"))])
async def change_password(
    payload: PasswordChange,
    user: CurrentUser,
    request: Request,
    session: SessionDep,
    clock: ClockDep,
) -> Response:
    """Change your password (the current one required); every other login ends."""
    principal = request.state.principal
    await service.change_password(
        session, user, principal.session_id, payload.old_password, payload.new_password, clock.now()
    )
    return Response(status_code=204)


@me_router.get("/export")
async def export_me(
    user: CurrentUser, session: SessionDep, keys: KeysDep, clock: ClockDep
) -> Response:
    """Everything Canopy holds about you, as one JSON document (fields: docs/privacy.md)."""
    document = await privacy.export(session, keys, user.id, clock.now())
    return Response(
        orjson.dumps(document),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="canopy-export.json"'},
    )


@me_router.delete("", status_code=204)
async def erase_me(
    user: CurrentUser,
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    rules: RulesDep,
    background: BackgroundTasks,
    payload: EraseIn | None = None,
) -> Response:
    """Erase your account: send your password, or call within 5 minutes of signing in with it. Your
    energy numbers stay in the ledger under an anonymous id; everything naming you goes."""
    now = clock.now()
    if payload is not None and payload.password is not None:
        if not await verify_password(user.password_hash, payload.password):
            raise service.InvalidCredentials("The password is not right")
    elif now.timestamp() - request.state.principal.auth_time > FRESH_TOKEN.total_seconds():
        # a sign-in with the password, not a refresh: a stolen refresh token cannot erase
        raise ReauthenticationRequired()
    await privacy.erase(session, user.id, now, rules.version)
    background.add_task(forget_on_boards, request.app.state.redis, user.id)
    return Response(status_code=204)
