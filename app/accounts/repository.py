"""All SQL of accounts: users, logins, refresh tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.accounts.models import AuthSession, RefreshToken, User
from app.accounts.revocations import note_revoked
from app.core.models import table_of
from app.core.sql import Statement


@dataclass(frozen=True)
class RefreshTokenState:
    session_id: uuid.UUID
    used_at: datetime | None
    expires_at: datetime


class AccountsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_user(self, **values: Any) -> User | None:
        """Insert a user; None when the handle is taken (also under a concurrent register)."""
        stmt = (
            insert(User)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["handle"])
            .returning(User)
        )
        return (await self.session.execute(stmt)).scalars().first()

    async def get_by_handle(self, handle: str) -> User | None:
        stmt = select(User).where(col(User.handle) == handle, col(User.erased_at).is_(None))
        return (await self.session.execute(stmt)).scalars().first()

    async def get_authenticated(self, user_id: uuid.UUID, session_id: uuid.UUID) -> User | None:
        """The user behind an access token, provided its login is still live: one query."""
        stmt = (
            select(User)
            .join(AuthSession, col(AuthSession.user_id) == col(User.id))
            .where(
                col(User.id) == user_id,
                col(User.erased_at).is_(None),
                col(AuthSession.id) == session_id,
                col(AuthSession.revoked_at).is_(None),
            )
        )
        return (await self.session.execute(stmt)).scalars().first()

    async def create_login(self, user_id: uuid.UUID, now: datetime) -> uuid.UUID:
        login = AuthSession(user_id=user_id, created_at=now, refreshed_at=now)
        self.session.add(login)
        await self.session.flush()
        return login.id

    async def add_refresh_token(
        self, session_id: uuid.UUID, token_hash: str, now: datetime, expires_at: datetime
    ) -> None:
        self.session.add(
            RefreshToken(
                session_id=session_id, token_hash=token_hash, created_at=now, expires_at=expires_at
            )
        )
        await self.session.flush()

    async def consume_refresh_token(
        self, token_hash: str, now: datetime
    ) -> tuple[uuid.UUID, uuid.UUID, datetime] | None:
        """Mark a live refresh token used, atomically; (session_id, user_id, the login's sign-in
        time) if this call did."""
        rt, login = table_of(RefreshToken).c, table_of(AuthSession).c
        stmt = (
            update(RefreshToken)
            .where(
                rt.token_hash == token_hash,
                rt.used_at.is_(None),
                rt.expires_at > now,
                login.id == rt.session_id,
                login.revoked_at.is_(None),
            )
            .values(used_at=now)
            .returning(rt.session_id, login.user_id, login.created_at)
        )
        row = (await self.session.execute(stmt)).first()
        return (row[0], row[1], row[2]) if row else None

    async def refresh_token_state(self, token_hash: str) -> RefreshTokenState | None:
        rt = table_of(RefreshToken).c
        stmt = select(rt.session_id, rt.used_at, rt.expires_at).where(rt.token_hash == token_hash)
        row = (await self.session.execute(stmt)).first()
        return RefreshTokenState(row[0], row[1], row[2]) if row else None

    async def touch_login(self, session_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(AuthSession).where(col(AuthSession.id) == session_id).values(refreshed_at=now)
        )

    async def revoke_login(self, session_id: uuid.UUID, now: datetime, reason: str) -> None:
        await self.session.execute(
            update(AuthSession)
            .where(col(AuthSession.id) == session_id, col(AuthSession.revoked_at).is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        note_revoked([session_id])

    async def revoke_other_logins(
        self, user_id: uuid.UUID, keep: uuid.UUID, now: datetime, reason: str
    ) -> None:
        ended = await self.session.execute(
            update(AuthSession)
            .where(
                col(AuthSession.user_id) == user_id,
                col(AuthSession.id) != keep,
                col(AuthSession.revoked_at).is_(None),
            )
            .values(revoked_at=now, revoked_reason=reason)
            .returning(col(AuthSession.id))
        )
        note_revoked(row[0] for row in ended)

    async def update_user(self, user_id: uuid.UUID, now: datetime, **values: Any) -> User:
        stmt = (
            update(User)
            .where(col(User.id) == user_id)
            .values(updated_at=now, **values)
            .returning(User)
            .execution_options(populate_existing=True)
        )
        user = (await self.session.execute(stmt)).scalars().one()
        return user


@dataclass(frozen=True, slots=True)
class MeRow:
    id: uuid.UUID
    handle: str
    display_name: str | None
    timezone: str
    region: str | None
    balance_g: int
    collected_total_g: int
    co2e_avoided_g: int
    created_at: datetime


# the caller's own row; a live login implies a live (not erased) user, checked anyway
ME = Statement(
    "SELECT id, handle, display_name, timezone, region, balance_g, collected_total_g, "
    "co2e_avoided_g, created_at FROM users WHERE id = :user AND erased_at IS NULL",
    row=MeRow,
)
