"""``Idempotency-Key`` handling for POSTs that create or move energy.

The key's record is inserted in the *same transaction* as the work it guards. A concurrent
duplicate's insert therefore waits on the unique index until the first transaction ends: if it
committed, the duplicate replays the stored response; if it rolled back, the duplicate does the
work itself. The work is done once either way, and a crash never leaves a key claimed with no work.

Stored responses may contain secrets (register returns tokens), so they are kept encrypted.
Errors are not stored: a request that failed changed nothing and may be retried with the same key.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request
from pydantic import BaseModel
from sqlalchemy import LargeBinary, String, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel
from starlette.responses import Response

from app.core.clock import Clock
from app.core.db import SessionDep
from app.core.errors import CanopyError
from app.core.models import table_of, ts_field
from app.core.security import Keys


class IdempotencyKeyReused(CanopyError):
    status, code, title = 422, "idempotency_key_reused", "Idempotency key reused with another body"


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_keys"

    owner: str = Field(primary_key=True, sa_type=String(80))
    key: str = Field(primary_key=True, sa_type=String(255))
    fingerprint: str = Field(sa_type=String(64))
    status_code: int | None = None
    response: bytes | None = Field(default=None, sa_type=LargeBinary)
    created_at: datetime = ts_field()
    expires_at: datetime = ts_field(index=True)
    # the person whose data the stored reply holds (export and erasure find it by this)
    user_id: uuid.UUID | None = Field(default=None, index=True)


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same": method, path and the body's JSON content."""
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    return hashlib.sha256(b"\0".join([method.encode(), path.encode(), canonical])).hexdigest()


def _json_response(status_code: int, body: bytes, replayed: bool) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


class Idempotency:
    """Per-request helper; ``run`` does the work once per (owner, key)."""

    def __init__(self, session: AsyncSession, request: Request, key: str | None) -> None:
        self.session = session
        self.request = request
        self.key = key

    async def run(
        self,
        *,
        owner: str,
        status_code: int | Callable[[Any], int],
        produce: Callable[[], Awaitable[BaseModel]],
        subject: Callable[[Any], uuid.UUID | None] | None = None,
    ) -> Response:
        """Run ``produce`` unless this key already ran it; answer the stored or new response.
        ``status_code`` may be a function of the result (201 created / 200 duplicate)."""

        def status_of(result: BaseModel) -> int:
            return status_code(result) if callable(status_code) else status_code

        if self.key is None:
            result = await produce()
            return _json_response(status_of(result), _dump(result), replayed=False)

        state = self.request.app.state
        clock: Clock = state.clock
        keys: Keys = state.keys
        now = clock.now()
        fp = fingerprint(self.request.method, self.request.url.path, await self.request.body())
        table = table_of(IdempotencyRecord)
        claim = (
            insert(table)
            .values(
                owner=owner,
                key=self.key,
                fingerprint=fp,
                created_at=now,
                expires_at=now + state.settings.idempotency_ttl,
            )
            .on_conflict_do_update(
                index_elements=["owner", "key"],
                set_={
                    "fingerprint": fp,
                    "status_code": None,
                    "response": None,
                    "created_at": now,
                    "expires_at": now + state.settings.idempotency_ttl,
                },
                # an expired record is reclaimed; a live one is left alone (→ no row returned)
                where=table.c.expires_at <= now,
            )
            .returning(table.c.owner)
        )
        claimed = (await self.session.execute(claim)).first() is not None
        if not claimed:
            existing = (
                await self.session.execute(
                    text(
                        "SELECT fingerprint, status_code, response FROM idempotency_keys "
                        "WHERE owner = :owner AND key = :key"
                    ),
                    {"owner": owner, "key": self.key},
                )
            ).one()
            if existing.fingerprint != fp:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used with a different request body"
                )
            return _json_response(
                existing.status_code, keys.decrypt(existing.response), replayed=True
            )

        result = await produce()
        body, status = _dump(result), status_of(result)
        await self.session.execute(
            text(
                "UPDATE idempotency_keys SET status_code = :status, response = :response, "
                "user_id = :subject WHERE owner = :owner AND key = :key"
            ),
            {
                "status": status,
                "response": keys.encrypt(body),
                "owner": owner,
                "key": self.key,
                "subject": subject(result) if subject else _owner_user(owner),
            },
        )
        return _json_response(status, body, replayed=False)


def _owner_user(owner: str) -> uuid.UUID | None:
    kind, _, ident = owner.partition(":")
    return uuid.UUID(ident) if kind == "user" else None


def _dump(result: BaseModel) -> bytes:
    # by alias: a schema may name a field after a Python keyword (``from``)
    return orjson.dumps(result.model_dump(mode="json", by_alias=True))


async def get_idempotency(
    request: Request,
    session: SessionDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="Retry-safe key: the same key and body replay the first response",
        ),
    ] = None,
) -> Idempotency:
    return Idempotency(session, request, idempotency_key)


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]


async def purge_expired(session: AsyncSession, now: datetime) -> int:
    """Delete expired records (worker job). Returns how many went."""
    result: Any = await session.execute(
        text("DELETE FROM idempotency_keys WHERE expires_at <= :now"), {"now": now}
    )
    return int(result.rowcount or 0)
