"""Registration, sign-in, token rotation and profile changes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import User
from app.accounts.repository import AccountsRepository
from app.accounts.schemas import AuthResult, MePatch, RegisterIn, UserPublic
from app.config import Settings
from app.core.errors import Conflict, Unauthorized, ValidationFailed
from app.core.security import Keys, digest, hash_password, new_token, verify_password


class HandleTaken(Conflict):
    code, title = "handle_taken", "This handle is taken"


class InvalidCredentials(Unauthorized):
    code, title = "invalid_credentials", "Wrong handle or password"


class InvalidRefreshToken(Unauthorized):
    title = "The refresh token is not valid"


class RefreshTokenReused(Unauthorized):
    """A used refresh token came back: someone holds a copy. The login is revoked, and that
    revocation must be committed even though the request fails."""

    title = "The refresh token was already used; this login has been signed out"
    keep_changes = True  # committed by the session dependency


class LoginExpired(Unauthorized):
    keep_changes = True  # the login is marked ended even though the request fails
    title = "This login has reached its maximum age; sign in again"


REFRESH_PREFIX = "rt_"


@dataclass(frozen=True)
class AuthContext:
    """What the auth services need besides the session: keys, settings and the time."""

    keys: Keys
    settings: Settings
    now: datetime


def user_public(user: User) -> UserPublic:
    assert user.handle is not None
    return UserPublic(
        id=user.id,
        handle=user.handle,
        display_name=user.display_name,
        timezone=user.timezone,
        region=user.region,
        balance_g=user.balance_g,
        collected_total_g=user.collected_total_g,
        co2e_avoided_g=user.co2e_avoided_g,
        created_at=user.created_at,
    )


async def _issue(
    repo: AccountsRepository,
    ctx: AuthContext,
    user: User,
    session_id: uuid.UUID,
    signed_in_at: datetime | None = None,
) -> AuthResult:
    refresh = new_token(REFRESH_PREFIX)
    await repo.add_refresh_token(
        session_id, digest(refresh), ctx.now, ctx.now + ctx.settings.refresh_token_ttl
    )
    access = ctx.keys.encode_access_token(
        user_id=str(user.id),
        session_id=str(session_id),
        now=ctx.now,
        ttl=ctx.settings.access_token_ttl,
        auth_time=signed_in_at or ctx.now,
    )
    return AuthResult(
        user=user_public(user),
        access_token=access,
        refresh_token=refresh,
        expires_in=int(ctx.settings.access_token_ttl.total_seconds()),
    )


async def register(
    session: AsyncSession, ctx: AuthContext, payload: RegisterIn, default_timezone: str
) -> AuthResult:
    """Create an account and sign it in. 409 ``handle_taken`` if the handle is in use."""
    repo = AccountsRepository(session)
    user = await repo.insert_user(
        id=uuid.uuid4(),
        handle=payload.handle,
        password_hash=await hash_password(payload.password),
        display_name=payload.display_name,
        timezone=payload.timezone or default_timezone,
        region=payload.region,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    if user is None:
        raise HandleTaken(f"The handle '{payload.handle}' is taken")
    session_id = await repo.create_login(user.id, ctx.now)
    return await _issue(repo, ctx, user, session_id)


async def sign_in(
    session: AsyncSession, ctx: AuthContext, handle: str, password: str
) -> AuthResult:
    repo = AccountsRepository(session)
    user = await repo.get_by_handle(handle)
    # verify even for unknown handles so both cases take the same time
    ok = await verify_password(user.password_hash if user else None, password)
    if user is None or not ok:
        raise InvalidCredentials()
    session_id = await repo.create_login(user.id, ctx.now)
    return await _issue(repo, ctx, user, session_id)


async def refresh(session: AsyncSession, ctx: AuthContext, refresh_token: str) -> AuthResult:
    """Rotate: the presented token is spent and a new pair issued. Presenting a spent token again
    revokes the whole login (every access and refresh token descended from that sign-in)."""
    repo = AccountsRepository(session)
    token_hash = digest(refresh_token)
    consumed = await repo.consume_refresh_token(token_hash, ctx.now)
    if consumed is None:
        state = await repo.refresh_token_state(token_hash)
        if state is not None and state.used_at is not None:
            await repo.revoke_login(state.session_id, ctx.now, "refresh_token_reuse")
            raise RefreshTokenReused()
        raise InvalidRefreshToken()
    session_id, user_id, signed_in_at = consumed
    if ctx.now >= signed_in_at + ctx.settings.login_max_age:
        # a login lives at most this long however often it is refreshed
        await repo.revoke_login(session_id, ctx.now, "expired")
        raise LoginExpired()
    user = await repo.get_authenticated(user_id, session_id)
    if user is None:  # erased meanwhile
        raise InvalidRefreshToken()
    await repo.touch_login(session_id, ctx.now)
    return await _issue(repo, ctx, user, session_id, signed_in_at)


async def sign_out(session: AsyncSession, session_id: uuid.UUID, now: datetime) -> None:
    """End one login: its access and refresh tokens stop working (everywhere within a second)."""
    await AccountsRepository(session).revoke_login(session_id, now, "logout")


async def change_password(
    session: AsyncSession, user: User, keep: uuid.UUID, old: str, new: str, now: datetime
) -> None:
    """Set a new password (the old one required) and end every other login."""
    if not await verify_password(user.password_hash, old):
        raise InvalidCredentials("The current password is not right")
    repo = AccountsRepository(session)
    await repo.update_user(user.id, now, password_hash=await hash_password(new))
    await repo.revoke_other_logins(user.id, keep, now, "password_changed")


REGION_CHANGE_EVERY = timedelta(days=30)


class RegionChangeTooSoon(Conflict):
    code, title = "region_change_too_soon", "The region was changed less than 30 days ago"


def region_change(user: User, region: str | None, now: datetime) -> dict[str, Any]:
    """The columns a change of region writes. Regional rates cannot be bought: a new region
    applies from the user's next local day (events of today and earlier keep the region in force
    when their day began), and it can change at most once every 30 days."""
    if region == user.region:
        return {}
    today = now.astimezone(ZoneInfo(user.timezone)).date()
    if user.region_from is not None:
        allowed = user.region_from - timedelta(days=1) + REGION_CHANGE_EVERY
        if today < allowed:
            raise RegionChangeTooSoon(f"The region can change again on {allowed.isoformat()}")
    # the previous change is in force by now (30 days > 1), so the current region is
    return {
        "region": region,
        "region_previous": user.region,
        "region_from": today + timedelta(days=1),
    }


async def update_profile(session: AsyncSession, user: User, patch: MePatch, now: datetime) -> User:
    """Apply the fields the client sent; an explicit null clears display_name or region.
    A new region applies from the next local day, at most once every 30 days."""
    changes: dict[str, Any] = {}
    for name in patch.model_fields_set:
        changes[name] = getattr(patch, name)
    if "timezone" in changes and changes["timezone"] is None:
        raise ValidationFailed([{"loc": ["body", "timezone"], "msg": "cannot be null"}])
    if "region" in changes:
        changes.update(region_change(user, changes.pop("region"), now))
    if not changes:
        return user
    return await AccountsRepository(session).update_user(user.id, now, **changes)
