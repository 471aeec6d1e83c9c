"""How the game's hot routes run their one statement and answer.

A hot route's work is one :class:`~app.core.sql.Statement`, run on the asyncpg pool (one round
trip, the statement its own transaction), and its body is built from the rows and serialised
with orjson — no pydantic object per row. A request that carries an ``Idempotency-Key`` runs the
*same* statement inside the key's transaction instead (:class:`~app.core.idempotency.Idempotency`
keeps the key's record and the work it guards in one commit); that cold path costs the key's
own round trips.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.core.errors import Unauthorized
from app.core.idempotency import Idempotency
from app.core.responses import json_response
from app.core.sql import Pg, Statement

R = TypeVar("R")

Body = dict[str, Any]


class LoginEnded(Unauthorized):
    """The token is valid but its user row is gone (a hot statement found no such user)."""

    def __init__(self) -> None:
        super().__init__("This login has ended; sign in again")


class Fetch(Protocol):
    """Runs one statement and returns its typed rows (``Pg.fetch`` or :func:`in_session`)."""

    def __call__(self, stmt: Statement[R], **params: Any) -> Awaitable[list[R]]: ...


def in_session(session: AsyncSession) -> Fetch:
    """A :class:`Fetch` that runs statements inside ``session``'s transaction."""

    async def fetch(stmt: Statement[R], **params: Any) -> list[R]:
        result = await session.execute(text(stmt.sql), params)
        return [stmt.row(**row._mapping) for row in result]

    return fetch


async def respond(
    idem: Idempotency,
    pg: Pg,
    work: Callable[[Fetch], Awaitable[Body]],
    *,
    owner: str,
    model: type[BaseModel],
    status_code: int = 200,
) -> Response:
    """Do ``work`` once and answer its body: on the hot pool, or under the request's
    ``Idempotency-Key`` (validated into ``model`` there, for the stored reply)."""
    if idem.key is None:
        return json_response(await work(pg.fetch), status_code)

    async def produce() -> BaseModel:
        return model.model_validate(await work(in_session(idem.session)))

    return await idem.run(owner=owner, status_code=status_code, produce=produce)
