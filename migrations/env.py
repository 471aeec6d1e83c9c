"""Alembic environment: async engine on asyncpg; one advisory lock so that several processes
starting at once (API replicas, workers) migrate one after another instead of racing."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import app.models  # noqa: F401  (registers every table on the metadata)
from app.config import get_settings
from app.core.models import metadata

MIGRATION_LOCK_ID = 0x63616E6F7079  # "canopy"


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url")
    if url:
        return url
    configured = get_settings().database_url
    if not configured:
        raise SystemExit("set CANOPY_DATABASE_URL or use `canopy migrate` (embedded default)")
    return configured


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        transaction_per_migration=True,
    )
    connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()


async def _run_async() -> None:
    engine = create_async_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
