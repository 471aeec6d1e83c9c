"""``canopy worker`` killed (SIGKILL) in the middle of cutting orders and in the middle of
delivering their webhooks, as real processes: every order reaches the partner at least once,
every attempt of an event carries the same ``webhook-id`` and bytes, and no planting is cut into
two orders."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.core.clock import FrozenClock
from tests.conftest import TestServers, _plain_dsn, drop_database, fresh_database
from tests.planting.conftest import add_item, create_ngo, fund, quick_players
from tests.processes import CANOPY, clean_env
from tests.reliability.conftest import Served
from tests.reliability.test_faults_postgres import ADMIN

pytestmark = pytest.mark.slow

JWT_SECRET = "test-jwt-secret-that-is-long-enough-0123456789"  # the `settings` fixture's


@dataclass
class HoldingReceiver:
    """A partner's webhook endpoint on loopback that records every request and, while
    ``hold`` is clear, keeps the sender waiting for its answer."""

    requests: list[tuple[str, bytes]] = field(default_factory=list)
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hooks"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            headers = {
                k.strip().lower(): v.strip()
                for k, v in (line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append((headers["webhook-id"], body))
            await self.hold.wait()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
def database(test_servers: TestServers) -> Iterator[str]:
    url = fresh_database(test_servers, "canopy_faults")
    from app.core import migrate

    migrate.upgrade(url)
    yield url
    drop_database(test_servers, url)


@pytest.fixture
async def receiver() -> AsyncIterator[HoldingReceiver]:
    r = HoldingReceiver()
    r.server = await asyncio.start_server(r._handle, "127.0.0.1", 0)
    yield r
    r.hold.set()
    r.server.close()


def start_worker(database: str, redis_url: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = clean_env(
        CANOPY_DATABASE_URL=database,
        CANOPY_REDIS_URL=redis_url,
        CANOPY_DATA_DIR=str(tmp_path / "data"),
        CANOPY_JWT_SECRET=JWT_SECRET,
        CANOPY_WEBHOOK_ALLOW_PRIVATE="true",
        CANOPY_RULES_REFRESH_SECONDS="0",
        CANOPY_LOG_FORMAT="text",
    )
    return subprocess.Popen(
        [CANOPY, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()  # SIGKILL: no cleanup, no rollback sent, sockets simply vanish
    proc.communicate(timeout=10)


async def until(check: Any, what: str, timeout: float = 45) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        await asyncio.sleep(0.05)
    return value


class TestWorkerKilled:
    async def test_orders_are_cut_once_and_every_order_reaches_the_partner(
        self,
        serve: Served,
        database: str,
        test_servers: TestServers,
        receiver: HoldingReceiver,
        clock: FrozenClock,
        tmp_path: Path,
    ) -> None:
        dsn = _plain_dsn(database)
        items = []
        async with serve(
            dsn=dsn,
            database_url=database,
            redis_url=test_servers.redis_url,
            webhook_allow_private=True,
        ) as (app, client):
            ngo = await create_ngo(client, ADMIN, webhook_url=receiver.url)
            players = await quick_players(app, 2)
            for p in players:
                await fund(app, p.id, 3 * 17_900)
            for n in range(3):  # three items, each a group of its own: three orders
                items.append(str((await add_item(client, ADMIN, ngo.id, name=f"tree {n}"))["id"]))
                for p in players:
                    planted = await client.post(
                        "/v1/plantings", json={"item_id": items[-1]}, headers=p.headers
                    )
                    assert planted.status_code == 201, planted.text
                clock.advance(timedelta(minutes=1))  # the groups are cut oldest first
        # (the frozen clock is days behind the worker's: every group has waited long enough)
        db = await asyncpg.connect(dsn)
        try:
            # 1. killed while cutting: the second group's plantings are locked, so the worker
            # has cut the first order and waits on the second when it dies
            blocker = await asyncpg.connect(dsn)
            await blocker.execute("BEGIN")
            await blocker.execute(
                "SELECT 1 FROM plantings WHERE item_id = $1 FOR UPDATE", uuid.UUID(items[1])
            )
            worker = start_worker(database, test_servers.redis_url, tmp_path)
            try:
                wrote = await until(
                    lambda: _waiting(db), "the worker cutting orders, waiting on a lock"
                )
            finally:
                kill(worker)
            assert wrote == "wrote", "the cut had not written the first order yet"
            await blocker.execute("ROLLBACK")
            await blocker.close()
            await until(lambda: _gone(db), "the killed worker's backends ended")
            assert await db.fetchval("SELECT count(*) FROM planting_orders") == 0
            assert await db.fetchval("SELECT count(*) FROM webhook_deliveries") == 0

            # 2. killed while delivering: the partner has the requests, the worker no answers
            worker = start_worker(database, test_servers.redis_url, tmp_path)
            try:
                await until(lambda: _received(receiver, 3), "the three order.created webhooks")
            finally:
                kill(worker)
            receiver.hold.set()
            await until(lambda: _gone(db), "the killed worker's backends ended")
            assert await db.fetchval("SELECT count(*) FROM planting_orders") == 3
            pending = await db.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending' "
                "AND lease_until IS NOT NULL"
            )
            assert pending == 3  # leased to the dead worker, not delivered
            # the lease (60 s, longer than any attempt) runs out: moved, not waited for
            await db.execute("UPDATE webhook_deliveries SET lease_until = now() - interval '1s'")

            # 3. the next worker delivers them again, the same events
            worker = start_worker(database, test_servers.redis_url, tmp_path)
            try:
                await until(
                    lambda: _count(
                        db, "SELECT count(*) = 3 FROM webhook_deliveries WHERE status = 'delivered'"
                    ),
                    "every delivery delivered",
                )
            finally:
                worker.terminate()
                worker.communicate(timeout=30)

            events = {
                r["event_id"]: r["body"]
                for r in await db.fetch("SELECT event_id, body FROM webhook_deliveries")
            }
            order_ids = {r["id"] for r in await db.fetch("SELECT id FROM planting_orders")}
            planted = await db.fetch("SELECT order_id FROM plantings")
        finally:
            await db.close()

        # every order once, every planting in exactly one of them
        assert len(order_ids) == 3 and len(planted) == 6
        assert {r["order_id"] for r in planted} == order_ids
        # every event reached the partner, each attempt with the same webhook-id and bytes
        attempts: dict[str, set[bytes]] = defaultdict(set)
        for webhook_id, body in receiver.requests:
            attempts[webhook_id].add(body)
        assert set(attempts) == set(events)
        assert all(bodies == {events[i].encode()} for i, bodies in attempts.items())
        assert len(receiver.requests) >= 6  # the killed attempts, then the deliveries
        received_orders = {
            json.loads(body)["data"]["id"]
            for body in {b for bodies in attempts.values() for b in bodies}
        }
        assert received_orders == {str(o) for o in order_ids}


async def _waiting(db: asyncpg.Connection) -> str | None:
    """Whether a worker's transaction waits on a lock, and has written rows already (it has a
    transaction id only once it has)."""
    wrote = await db.fetchval(
        "SELECT backend_xid IS NOT NULL FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'canopy' "
        "AND wait_event_type = 'Lock'"
    )
    return None if wrote is None else ("wrote" if wrote else "read only")


async def _gone(db: asyncpg.Connection) -> bool:
    return not await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'canopy'"
    )


async def _received(receiver: HoldingReceiver, n: int) -> bool:
    return len(receiver.requests) >= n


async def _count(db: asyncpg.Connection, sql: str) -> bool:
    return bool(await db.fetchval(sql))
