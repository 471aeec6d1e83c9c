"""Hot-path SQL: named statements compiled once, run on a raw asyncpg pool in one round trip.

A hot request runs exactly one statement (a CTE that locks, moves and books everything it needs)
with no ``BEGIN``/``COMMIT`` around it: PostgreSQL runs a single statement as its own
transaction, so it commits before the response is sent, and asyncpg's prepared-statement cache
makes every call after the first one ``Bind/Execute/Sync`` — one round trip. Cold paths keep the
SQLAlchemy session (:mod:`app.core.db`).

Statements are written with ``:name`` parameters (the same syntax as SQLAlchemy's ``text()``),
compiled to asyncpg's ``$n`` once at import, and their rows come back as the dataclass or
NamedTuple named by ``row`` — by column name, never by position.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

import asyncpg
from fastapi import Depends, Request

from app.core.errors import ServiceUnavailable

R = TypeVar("R")

# the same rule as SQLAlchemy's text(): ":name" not preceded by ":" or a word character and not
# followed by ":" — so "::uuid" casts and 'system:minted' literals are left alone
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")

# PostgreSQL errors that mean "try the same statement again": deadlock_detected,
# serialization_failure
RETRYABLE = frozenset({"40P01", "40001"})


class _NotSent(Exception):
    pass


def _not_sent(exc: Exception) -> bool:
    """asyncpg refused the statement before writing a byte because the server had already ended
    this pooled connection (its protocol is mid-error, or the connection is closed): safe to run
    on another connection. Not asyncpg's other interface errors (bad arguments are bugs)."""
    if isinstance(exc, asyncpg.InternalClientError):
        return "another operation" in str(exc)
    return type(exc) is asyncpg.InterfaceError and "closed" in str(exc)


@dataclass(frozen=True)
class Statement(Generic[R]):
    """One SQL statement with named parameters whose rows are built as ``row(**record)``."""

    sql: str
    row: type[R]
    compiled: str = field(init=False)
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        object.__setattr__(self, "compiled", _BIND.sub(number, self.sql))
        object.__setattr__(self, "names", tuple(names))

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        missing = [n for n in self.names if n not in params]
        if missing:
            raise TypeError(f"statement parameters missing: {', '.join(missing)}")
        return [params[n] for n in self.names]

    def rows(self, records: list[asyncpg.Record]) -> list[R]:
        return [self.row(**dict(r.items())) for r in records]


class Pg:
    """The process's hot-path pool. ``fetch`` runs one statement in one round trip, retrying a
    deadlock or serialization failure a bounded number of times (the statement is atomic, so a
    failed attempt changed nothing), and a statement refused before it was sent because its
    pooled connection had been ended by the server. Past the bound the request answers 503
    ``unavailable`` (:func:`app.core.errors.is_unavailable`)."""

    def __init__(self, pool: asyncpg.Pool, *, retries: int = 3) -> None:
        self.pool = pool
        self.retries = retries

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int, max_size: int) -> Pg:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            # keep the connections a peak opened: asyncpg closes one idle for 300 s by default,
            # and its pool hands out the most recently used first, so between the 07:00 storms
            # the extra ones sat idle, were closed, and the next storm opened and prepared them
            # again (S6: storms 5 min apart alternated between ~20 ms and 0.4-2.7 s p99). They
            # are within the process's connection budget (app/core/pools.py) either way.
            max_inactive_connection_lifetime=0,
            # hot statements leave no session state (no SET, LISTEN or advisory locks), so the
            # reset query asyncpg runs on every release would be a wasted round trip
            reset=_no_reset,
            # a hot statement is one CTE composed of named parts and can exceed asyncpg's 15 KB
            # default, above which it would be parsed again (one more round trip) on every call
            max_cacheable_statement_size=256 * 1024,
            server_settings={"application_name": "canopy-hot", "timezone": "UTC"},
        )
        return cls(pool)

    async def fetch(self, stmt: Statement[R], **params: Any) -> list[R]:
        args = stmt.args(params)
        for attempt in range(self.retries + 1):
            try:
                async with self.pool.acquire() as conn:
                    try:
                        records = await conn.fetch(stmt.compiled, *args)
                    except (asyncpg.InternalClientError, asyncpg.InterfaceError) as exc:
                        if not _not_sent(exc):
                            raise
                        # the server ended this pooled connection (a restart, a terminated
                        # backend) before asyncpg saw the socket close: drop it, try another
                        conn.terminate()
                        raise _NotSent from exc
            except _NotSent as exc:
                if attempt < self.retries:
                    continue
                raise ServiceUnavailable("PostgreSQL connections are being re-established") from exc
            except asyncpg.PostgresError as exc:
                if getattr(exc, "sqlstate", None) in RETRYABLE and attempt < self.retries:
                    await asyncio.sleep(0.005 * (attempt + 1))
                    continue
                raise
            return stmt.rows(records)
        raise AssertionError("unreachable")  # pragma: no cover

    async def fetch_one(self, stmt: Statement[R], **params: Any) -> R | None:
        rows = await self.fetch(stmt, **params)
        return rows[0] if rows else None

    async def close(self) -> None:
        await self.pool.close()


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None


async def get_pg(request: Request) -> Pg:
    pg: Pg = request.app.state.pg
    return pg


PgDep = Annotated[Pg, Depends(get_pg)]
