"""Which failures are "briefly unavailable" (503 with ``Retry-After``) and which stay bugs (500):
real errors from a real PostgreSQL, a real SQLAlchemy engine and a real closed port."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.errors import is_unavailable
from app.core.redis import create_redis
from tests.processes import free_port
from tests.reliability.servers import PrivatePostgres

pytestmark = pytest.mark.slow


async def _raised(coro: object) -> BaseException:
    try:
        await coro  # type: ignore[misc]
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


class TestWhatCountsAsUnavailable:
    async def test_a_refused_connection_is_unavailable(self) -> None:
        exc = await _raised(asyncpg.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/x"))
        assert isinstance(exc, OSError) and is_unavailable(exc)

    async def test_a_terminated_backend_is_unavailable_raw_and_through_sqlalchemy(
        self, private_pg: PrivatePostgres
    ) -> None:
        victim = await asyncpg.connect(private_pg.dsn)
        killer = await asyncpg.connect(private_pg.dsn)
        try:
            pid = victim.get_server_pid()
            await killer.execute("SELECT pg_terminate_backend($1)", pid)
            exc = await _raised(victim.fetch("SELECT 1"))
            assert is_unavailable(exc), repr(exc)
        finally:
            await killer.close()
            victim.terminate()

        engine = create_async_engine(private_pg.url, pool_size=1, max_overflow=0)
        try:
            async with engine.connect() as conn:
                pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                killer = await asyncpg.connect(private_pg.dsn)
                await killer.execute("SELECT pg_terminate_backend($1)", pid)
                await killer.close()
                exc = await _raised(conn.execute(text("SELECT 1")))
            assert isinstance(exc, sqlalchemy.exc.DBAPIError) and is_unavailable(exc)
        finally:
            await engine.dispose()

    async def test_a_deadlock_that_outlasted_its_retries_is_unavailable(
        self, private_pg: PrivatePostgres
    ) -> None:
        conn = await asyncpg.connect(private_pg.dsn)
        try:
            exc = await _raised(
                conn.execute(
                    "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = 'deadlock_detected'; END $$"
                )
            )
        finally:
            await conn.close()
        assert isinstance(exc, asyncpg.DeadlockDetectedError) and is_unavailable(exc)

    async def test_redis_gone_is_unavailable(self) -> None:
        client = create_redis(f"redis://127.0.0.1:{free_port()}/0")  # the app's own client
        try:
            exc = await _raised(client.ping())
        finally:
            await client.aclose()
        assert is_unavailable(exc)


class TestWhatStaysABug:
    async def test_constraint_and_syntax_errors_are_not_unavailable(
        self, private_pg: PrivatePostgres
    ) -> None:
        conn = await asyncpg.connect(private_pg.dsn)
        try:
            division = await _raised(conn.execute("SELECT 1/0"))
            syntax = await _raised(conn.execute("SELEC 1"))
            wrong_type = await _raised(conn.fetch("SELECT $1::int", "not a number"))
        finally:
            await conn.close()
        for exc in (division, syntax, wrong_type):
            assert not is_unavailable(exc), repr(exc)

    async def test_a_wrapped_bug_is_not_unavailable(self, private_pg: PrivatePostgres) -> None:
        engine = create_async_engine(private_pg.url)
        try:
            async with engine.connect() as conn:
                exc = await _raised(conn.execute(text("SELECT * FROM no_such_table")))
        finally:
            await engine.dispose()
        assert isinstance(exc, sqlalchemy.exc.ProgrammingError) and not is_unavailable(exc)

    def test_a_file_the_code_cannot_open_is_not_unavailable(self, tmp_path: Path) -> None:
        try:
            (tmp_path / "missing.toml").read_text()
        except OSError as exc:
            assert not is_unavailable(exc)
        else:
            raise AssertionError("read a missing file")

    async def test_postgresql_gone_from_its_unix_socket_is_unavailable(
        self, tmp_path: Path
    ) -> None:
        exc = await _raised(asyncpg.connect(host=str(tmp_path), port=5999, user="x"))
        assert isinstance(exc, OSError) and not isinstance(exc, ConnectionError)
        assert is_unavailable(exc)
