"""Migrations are the schema: upgrade, downgrade to nothing, upgrade again; and they match the
models exactly (a model change without a migration fails here)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.core import migrate
from app.models import metadata
from tests.conftest import TestServers, _plain_dsn, drop_database, fresh_database


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(_plain_dsn(url))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {r["tablename"] for r in rows}


async def _diff(url: str) -> list[object]:
    engine = create_async_engine(url)

    def compare(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


@pytest.fixture
def scratch_db(test_servers: TestServers):  # type: ignore[no-untyped-def]
    url = fresh_database(test_servers, "canopy_migrations")
    yield url
    drop_database(test_servers, url)


class TestMigrations:
    def test_upgrade_downgrade_upgrade(self, scratch_db: str) -> None:
        model_tables = {t.name for t in metadata.sorted_tables}
        migrate.upgrade(scratch_db)
        assert model_tables <= asyncio.run(_tables(scratch_db))
        migrate.downgrade(scratch_db, "base")
        assert asyncio.run(_tables(scratch_db)) == {"alembic_version"}
        migrate.upgrade(scratch_db)
        assert model_tables <= asyncio.run(_tables(scratch_db))

    def test_models_and_migrations_agree(self, scratch_db: str) -> None:
        migrate.upgrade(scratch_db)
        assert asyncio.run(_diff(scratch_db)) == []

    def test_migration_files_are_date_named(self) -> None:
        import re

        files = sorted(p.name for p in (migrate.ROOT / "migrations" / "versions").glob("*.py"))
        assert files
        assert all(re.match(r"^\d{4}-\d{2}-\d{2}-\d{4}_[a-z0-9_]+\.py$", f) for f in files), files
