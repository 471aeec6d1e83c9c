"""The operators' audit log: every admin action, who did it (which credential), when, on what.

Written in the same transaction as the action it records, so an action that rolled back leaves
no entry and a committed one always has one. Summaries are written by the callers from fields
they choose — never a request body, a key, a token or a webhook secret. The log names partners,
orders and rule versions, not people's personal data beyond an account id, and it is not part of
a user's export (it is the operator's record, kept for accountability)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import BigInteger, Column, String, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from app.admin.dependencies import AdminDep
from app.core.db import SessionDep
from app.core.models import ts_field
from app.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, split_page


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entries"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True)
    )
    at: datetime = ts_field()
    # "admin-token", "console:<operator>", "cli" — which credential acted
    actor: str = Field(sa_type=String(64))
    action: str = Field(sa_type=String(64))
    target: str = Field(sa_type=String(200))
    summary: str = Field(sa_type=String(1000))


_INSERT = text(
    "INSERT INTO audit_entries (at, actor, action, target, summary) "
    "VALUES (:at, :actor, :action, :target, :summary)"
)


async def record(
    session: AsyncSession,
    *,
    action: str,
    target: str,
    summary: str,
    at: datetime,
    actor: str = "admin-token",
) -> None:
    """Add an entry in the caller's transaction (it commits or rolls back with the action)."""
    await session.execute(
        _INSERT,
        {
            "at": at,
            "actor": actor[:64],
            "action": action[:64],
            "target": target[:200],
            "summary": summary[:1000],
        },
    )


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    summary: str


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: str | None


router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[AdminDep])


@router.get("/audit", response_model=AuditPage)
async def list_audit(
    session: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> AuditPage:
    """Every admin action, newest first."""
    before = decode_cursor(cursor)
    rows: list[Any] = list(
        await session.execute(
            text(
                "SELECT id, at, actor, action, target, summary FROM audit_entries "
                "WHERE CAST(:before AS bigint) IS NULL OR id < :before "
                "ORDER BY id DESC LIMIT :limit"
            ),
            {"before": before, "limit": limit + 1},
        )
    )
    page, next_cursor = split_page(rows, limit, lambda r: int(r.id))
    return AuditPage(
        entries=[
            AuditEntryOut(
                id=r.id, at=r.at, actor=r.actor, action=r.action, target=r.target, summary=r.summary
            )
            for r in page
        ],
        next_cursor=next_cursor,
    )
