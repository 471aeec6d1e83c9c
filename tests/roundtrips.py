"""Counting round trips on the wire: the guard of the hot paths' budget (≤ 1 PostgreSQL and ≤ 1
Redis round trip per request).

A :class:`TurnProxy` sits between the app and a real server and counts *turns*: a turn starts
whenever the client sends after the server last spoke (or for the first time on a connection).
That is exactly a round trip, whatever the client library: asyncpg's Parse/Bind/Execute/Sync in
one write, a SQLAlchemy ``BEGIN`` then a statement then ``COMMIT`` (three), a Redis pipeline or
script (one), a pool's reset query on release (one more). Nothing is mocked: the bytes go to
the real PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field


@dataclass
class Turns:
    count: int = 0
    # the first bytes of each turn, to say *what* went over the wire when a budget breaks
    samples: list[bytes] = field(default_factory=list)


class TurnProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.turns = Turns()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    @contextlib.contextmanager
    def measure(self) -> Iterator[Turns]:
        self.turns = Turns()
        yield self.turns

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        last = ["server"]  # who spoke last on this connection

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, side: str) -> None:
            try:
                while data := await src.read(65536):
                    if side == "client" and last[0] != "client":
                        self.turns.count += 1
                        self.turns.samples.append(data[:80])
                    last[0] = side
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        tasks = [
            asyncio.create_task(pump(reader, up_writer, "client")),
            asyncio.create_task(pump(up_reader, writer, "server")),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks)
        finally:
            self._tasks.difference_update(tasks)


@contextlib.asynccontextmanager
async def proxied(host: str, port: int) -> AsyncIterator[TurnProxy]:
    proxy = TurnProxy(host, port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@dataclass
class Budget:
    """What one request sent over the wire."""

    pg: Turns
    redis: Turns

    def check(self, *, pg: int = 1, redis: int = 1) -> None:
        assert self.pg.count <= pg, f"{self.pg.count} PostgreSQL round trips: {self.pg.samples}"
        assert self.redis.count <= redis, (
            f"{self.redis.count} Redis round trips: {self.redis.samples}"
        )


class Meter:
    """Both proxies of a counted app; ``async with meter.request() as budget: ...``."""

    def __init__(self, pg: TurnProxy, redis: TurnProxy) -> None:
        self.pg = pg
        self.redis = redis

    @contextlib.asynccontextmanager
    async def request(self) -> AsyncIterator[Budget]:
        # let anything a previous request left running (background tasks) finish first
        await asyncio.sleep(0.05)
        with self.pg.measure() as pg, self.redis.measure() as redis:
            yield Budget(pg, redis)
