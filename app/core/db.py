"""PostgreSQL access: one async engine per process, one session per request or job.

The session dependency commits when the handler returns and rolls back on any error; services and
repositories only ``flush()``, so a request's ledger entries land together or not at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.config import Settings
from app.core.errors import CanopyError
from app.core.pools import PoolPlan, plan_api


def plain_dsn(database_url: str) -> str:
    """The libpq-style DSN of a ``postgresql+asyncpg://`` URL, for asyncpg itself."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_engine(
    database_url: str, settings: Settings, plan: PoolPlan | None = None
) -> AsyncEngine:
    """The process's engine, its pool sized by ``plan`` (default: an API process's share of
    ``CANOPY_DB_MAX_CONNECTIONS``)."""
    plan = plan or plan_api(settings)
    engine = create_async_engine(
        database_url,
        pool_size=plan.engine_pool_size,
        max_overflow=plan.engine_max_overflow,
        # no pre-ping: on asyncpg it costs three round trips per checkout; a connection the
        # server closed (a restart, a terminated backend) is noticed without one, at checkout
        # (see _drop_closed), and one that dies under a statement answers 503 `unavailable`
        pool_recycle=1800,
        connect_args={"server_settings": {"application_name": "canopy", "timezone": "UTC"}},
    )
    event.listen(engine.sync_engine.pool, "checkout", _drop_closed)
    return engine


def _drop_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A pooled connection whose socket the server closed meanwhile (PostgreSQL restarted, or
    the backend was terminated) is discarded at checkout and the pool hands out a fresh one:
    asyncpg has already seen the connection end, so asking costs no round trip. Without this
    the first request after a restart would meet the dead connection and fail."""
    raw = getattr(dbapi_connection, "_connection", None)  # SQLAlchemy's asyncpg adapter
    if raw is not None and raw.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for this request; committed after the handler returns, before the response."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except CanopyError as exc:
            await (session.commit() if exc.keep_changes else session.rollback())
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


# scope="function": the commit happens when the endpoint returns, before the response is sent,
# so a client never sees 201 for work that then failed to commit.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
