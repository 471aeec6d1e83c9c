"""Connection pools sized from one budget: every process's pools together stay within
CANOPY_DB_MAX_CONNECTIONS, checked by arithmetic and on a real server under load."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from typer.testing import CliRunner

from app.cli import app as cli
from app.config import Settings
from app.core.clock import FrozenClock
from app.core.pools import (
    MIN_PER_PROCESS,
    BudgetTooSmall,
    default_workers,
    plan_api,
    plan_worker,
)
from app.main import create_app
from tests.conftest import (
    GENEROUS_LIMIT,
    TestServers,
    _clean,
    _plain_dsn,
    require_tcp_server,
    set_limits,
)
from tests.helpers import register


class TestPlan:
    def test_one_process_keeps_the_historic_sizes(self, settings: Settings) -> None:
        plan = plan_api(settings, 1)
        assert (plan.engine_pool_size, plan.engine_max_overflow, plan.hot_pool_size) == (10, 20, 10)
        assert plan.total == 41 <= settings.db_max_connections

    @pytest.mark.parametrize("processes", range(1, 21))
    def test_the_default_budget_fits_postgresql_default_with_the_worker(
        self, settings: Settings, processes: int
    ) -> None:
        plan = plan_api(settings, processes)
        assert plan.total <= settings.db_max_connections == 80
        assert plan.per_process >= MIN_PER_PROCESS and plan.hot_pool_size >= 1
        # the API, one canopy worker, a migration and PostgreSQL's 3 superuser slots
        assert plan.total + plan_worker(settings).per_process + 1 + 3 <= 100

    def test_four_workers_share_the_budget(self, settings: Settings) -> None:
        # the issue: --workers 4 used to allow 4 x (10 + 20 + 10 + 1) = 164 connections
        plan = plan_api(settings, 4)
        assert plan.per_process == 20 and plan.total == 80

    def test_a_budget_too_small_for_the_workers_is_refused(self, settings: Settings) -> None:
        with pytest.raises(BudgetTooSmall, match="CANOPY_DB_MAX_CONNECTIONS=80"):
            plan_api(settings, 30)

    def test_explicit_sizes_win(self, settings: Settings) -> None:
        explicit = settings.model_copy(
            update={"db_pool_size": 3, "db_max_overflow": 0, "hot_pool_size": 2}
        )
        plan = plan_api(explicit, 4)
        assert (plan.engine_pool_size, plan.engine_max_overflow, plan.hot_pool_size) == (3, 0, 2)
        assert not plan.over_budget
        greedy = settings.model_copy(update={"db_pool_size": 50, "db_max_overflow": 50})
        assert plan_api(greedy, 2).over_budget  # allowed, and canopy serve warns

    def test_default_workers_keep_a_useful_pool_each(self, settings: Settings) -> None:
        assert default_workers(settings, 2) == 2
        assert default_workers(settings, 64) == 8

    def test_serve_refuses_a_budget_too_small_before_starting_anything(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from app.config import get_settings

        monkeypatch.setenv("CANOPY_DB_MAX_CONNECTIONS", "20")
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(cli, ["serve", "--workers", "8"])
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 2
        assert "each needs at least 4" in result.output


async def _connections(admin_dsn: str, database: str) -> int:
    conn = await asyncpg.connect(admin_dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                "AND application_name LIKE 'canopy%'",
                database,
            )
        )
    finally:
        await conn.close()


class TestBudgetUnderLoad:
    async def test_a_process_never_holds_more_than_its_share(
        self, settings: Settings, clock: FrozenClock, test_servers: TestServers
    ) -> None:
        require_tcp_server(test_servers)
        await _clean(test_servers)
        small = settings.model_copy(
            update={"db_max_connections": 8, "revocation_poll_seconds": 0.05}
        )
        plan = plan_api(small)
        assert plan.per_process == 8
        database = _plain_dsn(test_servers.database_url).rsplit("/", 1)[1]
        application = create_app(small, clock=clock, run_worker=False)
        peak = 0
        async with LifespanManager(application):
            set_limits(application, register=GENEROUS_LIMIT, activities=GENEROUS_LIMIT)
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                players = [await register(client, f"player{i}") for i in range(4)]

                async def load() -> None:
                    for _ in range(15):
                        await asyncio.gather(
                            *(client.get("/v1/me", headers=p.headers) for p in players * 5),
                            *(client.get("/v1/forest", headers=p.headers) for p in players * 5),
                            *(
                                client.get("/v1/energy/ledger", headers=p.headers)
                                for p in players * 5
                            ),
                        )

                task = asyncio.create_task(load())
                while not task.done():
                    peak = max(peak, await _connections(test_servers.admin_dsn, database))
                    await asyncio.sleep(0.01)
                await task
        assert 2 <= peak <= plan.per_process, peak


class TestHotPoolKeepsItsPeak:
    async def test_connections_a_burst_opened_stay_open_when_idle(
        self, test_servers: TestServers
    ) -> None:
        """asyncpg closes a connection idle for 300 s unless told not to. The hot pool must
        keep the connections a 07:00 storm opened, or the next storm opens and prepares them
        all again (S6, docs/performance.md)."""
        from app.core.sql import Pg

        pg = await Pg.connect(_plain_dsn(test_servers.database_url), min_size=1, max_size=4)
        try:
            # a burst: four connections at once
            held = [await pg.pool.acquire() for _ in range(4)]
            for conn in held:
                await pg.pool.release(conn)
            assert pg.pool.get_size() == 4
            # asyncpg's idle timeout for the pool; 0 (off) is the only value that keeps them
            assert pg.pool._max_inactive_connection_lifetime == 0
        finally:
            await pg.pool.close()
