"""All SQL of partners."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.partners.models import Partner


class PartnersRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, partner: Partner) -> Partner:
        self.session.add(partner)
        await self.session.flush()
        return partner

    async def list(self) -> list[Partner]:
        stmt = select(Partner).order_by(col(Partner.created_at), col(Partner.id))
        return list((await self.session.execute(stmt)).scalars())

    async def get(self, partner_id: uuid.UUID) -> Partner | None:
        stmt = select(Partner).where(col(Partner.id) == partner_id)
        return (await self.session.execute(stmt)).scalars().first()

    async def by_key_hash(self, key_hash: str) -> Partner | None:
        stmt = select(Partner).where(
            col(Partner.api_key_hash) == key_hash,
            col(Partner.disabled_at).is_(None),
        )
        return (await self.session.execute(stmt)).scalars().first()

    async def update(self, partner_id: uuid.UUID, now: datetime, **values: Any) -> Partner | None:
        stmt = (
            update(Partner)
            .where(col(Partner.id) == partner_id)
            .values(updated_at=now, **values)
            .returning(Partner)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalars().first()
