"""The social write and read paths, each beside a baseline in the same run:

1. Friend collects on random pairs: ``POST /v1/friends/{owner}/collect`` with one ball id, over
   real HTTP, versus ``pgbench`` running the statement the API runs for it
   (``app.game.stealing.service.STEAL_SOME``) with the same parameters. ``POOL_USERS``-user blocks
   of a friendship ring (every user has ``RING`` friends), every user with ``POOL_BALLS`` ripe
   stealable balls; each ball is assigned to ``TAKERS`` of its owner's friends. Those
   (collector, owner, ball) triples are shuffled into a helper table ``bench_triples``; every call,
   on either side, takes the next triple (a ``bench_cursor`` sequence), so every call takes from a
   ball its collector has not taken yet, and the owner floor is never reached (``TAKERS`` takes of
   at most ``max_share`` each stay under ``1 - owner_floor``). The HTTP side then runs again,
   paced open-loop at ``PACE`` of its measured maximum, for the latency a call sees below
   saturation.
2. The 07:00 storm: ``STORM_FRIENDS`` friends of one owner fire ``POST /v1/friends/{owner}/collect``
   (no body: every ripe ball) at the same instant, on connections opened beforehand; p50, p99 and
   their ratio, then the owner's balls and the ledger are checked for over-take.
3. ``GET /v1/friends`` for a user with ``LIST_FRIENDS`` friends (each with ``LIST_BALLS`` balls,
   some ripe, one growing), one call at a time, beside the ``friend_summaries`` statement run
   directly through asyncpg.

The HTTP client is a minimal HTTP/1.1 client on asyncio streams (keep-alive connections opened
before each phase), so the load generator takes as little of the shared CPU as it can. Each
measured phase prints what one call cost in CPU: the server (uvicorn and its workers), PostgreSQL
(the backends of the scratch database, sampled), pgbench and this process.

Servers: ``CANOPY_BENCH_DATABASE_URL`` / ``CANOPY_BENCH_REDIS_URL`` (or the embedded ones under
``.canopy-bench``). A fresh database is created and dropped. The server is ``canopy serve
--no-worker --workers N`` for each N in ``BENCH_WORKERS`` (default ``1,2``), with a rules file
whose ``[limits]`` are lifted; the best N is summarised. The load generator (this process) and
pgbench share the machine's cores with it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import psutil
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import make_url

from app.config import normalize_database_url
from app.core.embedded import ensure_postgres, ensure_redis
from app.core.security import JWT_ALGORITHM, JWT_AUDIENCE
from app.game.stealing.service import STEAL_SOME, StealParams, friend_summaries
from bench.common import exec_sql, p50_p99, plain_dsn, to_ms

DURATION = float(os.environ.get("BENCH_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
WORKER_CHOICES = [int(w) for w in os.environ.get("BENCH_WORKERS", "1,2").split(",") if w.strip()]
PACE = 0.8  # the paced phase runs at this share of the measured maximum
PACED_CONNECTIONS = 64  # open connections the paced phase may use at once

POOL_USERS = 4000  # users per friendship-ring block of the random-pairs population
RING = (-4, -3, -2, -1, 1, 2, 3, 4)  # a user's friends: these offsets around the block's ring
POOL_BALLS = 6  # ripe balls per user
TAKERS = 4  # friends assigned to each ball (so at most 4 takes: 40 % < the 50 % owner floor)

STORM_FRIENDS = 256
STORM_BALLS = 5
STORM_ROUNDS = 3  # storms per worker setting, each on a fresh owner

LIST_FRIENDS = 500
LIST_BALLS = 3  # per friend: LIST_BALLS - 1 ripe, one growing
LIST_SECONDS = max(2.0, DURATION / 3)

COLLECT_TARGET = 0.60  # HTTP collects/s as a share of pgbench tps
PACED_P99_TARGET_MS = 20.0
STORM_RATIO_TARGET = 5.0  # p99 / p50
LIST_P50_TARGET_MS = 20.0

LIMIT = "1000000/minute"
ADMIN_TOKEN = "bench-admin-" + uuid.uuid4().hex
JWT_SECRET = "bench-jwt-" + uuid.uuid4().hex

# every bench id is computable from an integer: users (and their one login) n, balls n * 16 + j
UID_SQL = "CAST(lpad(to_hex(CAST({} AS bigint)), 32, '0') AS uuid)"
POOL_BASE = 1  # pool block b holds users POOL_BASE + b * POOL_USERS ...
LIST_BASE = 1 << 40  # the user with LIST_FRIENDS friends; friends LIST_BASE + 1 ...
STORM_BASE = 1 << 41  # storm friends STORM_BASE + 1 ...; owners STORM_BASE + 1000 + r


def uid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def _line(name: str, rate: float, unit: str, latencies: list[float] | None = None) -> None:
    text = f"  {name:<46} {rate:>8.0f} {unit}"
    if latencies:
        p50, p99 = p50_p99(latencies)
        text += f"   p50 {to_ms(p50):7.2f} ms   p99 {to_ms(p99):7.2f} ms"
    print(text, flush=True)


def _rules(root: Path, into: Path) -> tuple[Path, StealParams]:
    """The shipped rules with every ``[limits]`` entry lifted out of the way, and the stealing
    parameters a collector without a double-collect card gets under them."""
    text = (root / "rules" / "default.toml").read_text()
    start = text.index("\n[limits]")
    rest = text[start + 1 :]
    after = re.search(r"\n\[", rest)
    end = start + 1 + after.start() + 1 if after else len(text)
    names = ("register", "login", "collect", "friend_requests", "activities")
    limits = "[limits]\n" + "".join(f'{name} = "{LIMIT}"\n' for name in names)
    path = into / "rules.toml"
    path.write_text(text[: start + 1] + limits + text[end:])
    s = tomllib.loads(path.read_text())["stealing"]
    params = StealParams(
        float(s["max_share"]), float(s["owner_floor"]), s["mode"] == "fixed", allowed=1
    )
    return path, params


def _token(n: int, now: datetime) -> str:
    """An access token for bench user ``n`` (whose login id is ``uid(n)`` too), signed as the
    server signs them."""
    return jwt.encode(
        {
            "sub": str(uid(n)),
            "sid": str(uid(n)),
            "aud": JWT_AUDIENCE,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(hours=2)).timestamp()),
        },
        JWT_SECRET,
        algorithm=JWT_ALGORITHM,
    )


# --- a minimal HTTP/1.1 client ------------------------------------------------------------------


def _request(method: str, path: str, token: str | None = None, body: bytes | None = None) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: bench"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


class Conn:
    """One keep-alive connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    def send(self, raw: bytes) -> None:
        self.writer.write(raw)

    async def response(self) -> tuple[int, bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = _LENGTH.search(head)
        if length is None:
            raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
        return int(head[9:12]), await self.reader.readexactly(int(length.group(1)))

    async def call(self, raw: bytes) -> tuple[int, bytes]:
        self.send(raw)
        return await self.response()

    def close(self) -> None:
        self.writer.close()


async def _connections(port: int, count: int, warm: bytes) -> list[Conn]:
    """``count`` connections, each used once for ``warm`` so the server has accepted it."""
    conns = list(await asyncio.gather(*(Conn.open(port) for _ in range(count))))
    answers = await asyncio.gather(*(c.call(warm) for c in conns))
    bad = [a for a in answers if a[0] != 200]
    if bad:
        raise RuntimeError(f"warm-up request failed: {bad[0]!r}")
    return conns


async def _closed_loop(
    conns: list[Conn], call: Callable[[Conn], Awaitable[bool]], seconds: float
) -> tuple[int, list[float], float]:
    """Every connection calling back to back until the deadline (or until ``call`` returns
    False: nothing left to do). Returns (calls, latencies, elapsed seconds)."""
    latencies: list[float] = []
    begin = time.perf_counter()
    deadline = begin + seconds

    async def client(conn: Conn) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            if not await call(conn):
                return
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(client(c) for c in conns))
    return len(latencies), latencies, time.perf_counter() - begin


async def _open_loop(
    conns: list[Conn], call: Callable[[Conn], Awaitable[bool]], rate: float, seconds: float
) -> tuple[list[float], float, int]:
    """Start call ``i`` at ``i / rate`` whatever the earlier ones are doing (no coordinated
    omission: a latency runs from the scheduled start, waiting for a free connection included).
    Returns (latencies, elapsed, peak in flight)."""
    free: asyncio.Queue[Conn] = asyncio.Queue()
    for conn in conns:
        free.put_nowait(conn)
    latencies: list[float] = []
    total = max(1, int(rate * seconds))
    in_flight = peak = 0
    begin = time.perf_counter()

    async def one(scheduled: float) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        conn = await free.get()
        try:
            await call(conn)
        finally:
            free.put_nowait(conn)
        latencies.append(time.perf_counter() - scheduled)
        in_flight -= 1

    tasks = []
    for index in range(total):
        scheduled = begin + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    return latencies, time.perf_counter() - begin, peak


class Cpu:
    """CPU seconds used by the server (its process and uvicorn's workers), by the PostgreSQL
    backends connected to the scratch database, by this process and by finished child processes
    (pgbench), so a phase can say what one call costs on each side of each socket. Backends are
    sampled every 0.2 s (a backend that exits mid-phase counts up to its last sample)."""

    def __init__(self, server_pid: int | None, database: str) -> None:
        self.server = psutil.Process(server_pid) if server_pid else None
        self.database = database
        self.me = psutil.Process()
        self.checked: dict[int, psutil.Process | None] = {}
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.marks = (0.0, 0.0, 0.0)
        self.running = False
        self.thread: threading.Thread | None = None

    @staticmethod
    def _used(procs: list[psutil.Process]) -> float:
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def _backends(self) -> None:
        for pid in psutil.pids():
            if pid not in self.checked:
                try:
                    proc = psutil.Process(pid)
                    line = " ".join(proc.cmdline())
                    mine = line.startswith("postgres:") and f" {self.database} " in line
                    self.checked[pid] = proc if mine else None
                except psutil.Error:
                    self.checked[pid] = None
        for pid, proc in self.checked.items():
            if proc is None:
                continue
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            self.first.setdefault(pid, 0.0 if self.running else times.user + times.system)
            self.last[pid] = times.user + times.system

    def _sample(self) -> None:
        while self.running:
            self._backends()
            time.sleep(0.2)

    def _now(self) -> tuple[float, float, float]:
        server = (
            self._used([self.server, *self.server.children(recursive=True)]) if self.server else 0
        )
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return server, self._used([self.me]), children.ru_utime + children.ru_stime

    def start(self) -> None:
        self.first, self.last = {}, {}
        self._backends()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        self.marks = self._now()

    def report(self, calls: int, elapsed: float, unit: str) -> None:
        now = self._now()
        self.running = False
        if self.thread:
            self.thread.join()
        self._backends()
        server, me, children = (b - a for a, b in zip(self.marks, now, strict=True))
        pg = sum(self.last[pid] - first for pid, first in self.first.items())
        parts = []
        if self.server:
            parts.append(f"server {to_ms(server / calls):.2f} ms ({server / elapsed:.2f} cores)")
        parts.append(f"PostgreSQL {to_ms(pg / calls):.2f} ms ({pg / elapsed:.2f} cores)")
        if children > 0.01:
            parts.append(
                f"pgbench {to_ms(children / calls):.2f} ms ({children / elapsed:.2f} cores)"
            )
        parts.append(f"load generator {to_ms(me / calls):.2f} ms ({me / elapsed:.2f} cores)")
        print(f"    CPU per {unit}: " + ", ".join(parts), flush=True)


# --- data ---------------------------------------------------------------------------------------

SEED_USERS = f"""
INSERT INTO users (id, handle, password_hash, display_name, timezone, region, balance_g,
                   collected_total_g, co2e_avoided_g, created_at, updated_at, erased_at)
SELECT {UID_SQL.format("n")}, 's' || n, NULL, 'bench ' || n, 'Asia/Shanghai', NULL, 0, 0, 0,
       $2, $2, NULL
FROM unnest(CAST($1 AS bigint[])) AS n
"""

SEED_SESSIONS = f"""
INSERT INTO auth_sessions (id, user_id, created_at, refreshed_at, revoked_at, revoked_reason)
SELECT {UID_SQL.format("n")}, {UID_SQL.format("n")}, $2, $2, NULL, NULL
FROM unnest(CAST($1 AS bigint[])) AS n
"""

SEED_FRIENDS = f"""
INSERT INTO friendships (user_id, friend_id, created_at)
SELECT {UID_SQL.format("p.a")}, {UID_SQL.format("p.b")}, $3
FROM unnest(CAST($1 AS bigint[]), CAST($2 AS bigint[])) AS p(a, b)
"""

# balls of the given owners and their mint transfers (system:minted -> ball), as
# app.energy.ingest.mint_balls writes them: balls 0 .. $3 - 1 ripened a day ago, the rest ripen
# in an hour
SEED_BALLS = f"""
WITH balls AS (
    INSERT INTO energy_balls (id, user_id, kind, ref, amount_g, remaining_g, stealable,
                              created_at, ripens_at, expires_at, expired_at, expired_g,
                              rules_version, stolen_g)
    SELECT {UID_SQL.format("o * 16 + j")}, {UID_SQL.format("o")}, 'bus',
           'activity:bench-social:' || o || '-' || j, a.g, a.g, true,
           t.ripens - interval '24 hours', t.ripens, t.ripens + interval '72 hours', NULL, 0,
           $5, 0
    FROM unnest(CAST($1 AS bigint[])) AS o, generate_series(0, $2 - 1) AS j,
         LATERAL (SELECT 20 + (o * 7 + j * 13) % 181 AS g) a,
         LATERAL (SELECT CASE WHEN j < $3 THEN CAST($4 AS timestamptz) - interval '24 hours'
                              ELSE CAST($4 AS timestamptz) + interval '1 hour' END AS ripens) t
    RETURNING id, user_id, amount_g, ref, created_at
), moves AS MATERIALIZED (
    SELECT balls.*, gen_random_uuid() AS transfer FROM balls
)
INSERT INTO ledger_entries (transfer_id, account, user_id, ball_id, amount_g, balance_after_g,
                            reason, ref, rules_version, at)
SELECT transfer, 'system:minted', CAST(NULL AS uuid), CAST(NULL AS uuid), -amount_g,
       CAST(NULL AS bigint), 'mint', ref, $5, created_at FROM moves
UNION ALL
SELECT transfer, 'ball', user_id, id, amount_g, NULL, 'mint', ref, $5, created_at FROM moves
"""

TRIPLES_DDL = """
CREATE TABLE bench_triples (
    idx bigint PRIMARY KEY, collector_n bigint NOT NULL, me uuid NOT NULL, owner uuid NOT NULL,
    ids text NOT NULL
);
CREATE SEQUENCE bench_cursor;
"""

# the ring block from $1 (size $2): ball j of user p goes to the friends at RING offsets
# (j .. j + TAKERS - 1) mod len(RING); all triples of the block shuffled, numbered from $3 + 1
SEED_TRIPLES = f"""
INSERT INTO bench_triples (idx, collector_n, me, owner, ids)
SELECT $3 + row_number() OVER (ORDER BY random()), c.n, {UID_SQL.format("c.n")},
       {UID_SQL.format("$1 + p")}, '{{' || {UID_SQL.format("($1 + p) * 16 + j")} || '}}'
FROM generate_series(0, $2 - 1) AS p, generate_series(0, {POOL_BALLS - 1}) AS j,
     generate_series(0, {TAKERS - 1}) AS k,
     LATERAL (SELECT $1 + (p + (CAST($4 AS int[]))[1 + (j + k) % {len(RING)}] + $2) % $2 AS n) c
"""


@dataclass
class Triple:
    collector: int
    owner: uuid.UUID
    ball: str


@dataclass
class Population:
    """The random-pairs population: ring blocks and their shuffled triples."""

    url: str
    version: int
    blocks: int = 0
    seeded: int = 0  # triples numbered 1 .. seeded
    cursor: int = 0  # triples 1 .. cursor are used
    tokens: dict[int, str] = field(default_factory=dict)

    async def ensure(self, conn: asyncpg.Connection, wanted: int) -> None:
        """At least ``wanted`` unused triples."""
        while self.seeded - self.cursor < wanted:
            lo = POOL_BASE + self.blocks * POOL_USERS
            users = list(range(lo, lo + POOL_USERS))
            now = datetime.now(UTC)
            pairs = [(lo + p, lo + (p + d) % POOL_USERS) for p in range(POOL_USERS) for d in RING]
            async with conn.transaction():
                await _seed_users(conn, users, now)
                await conn.execute(SEED_FRIENDS, [a for a, _ in pairs], [b for _, b in pairs], now)
                await conn.execute(SEED_BALLS, users, POOL_BALLS, POOL_BALLS, now, self.version)
                await conn.execute(SEED_TRIPLES, lo, POOL_USERS, self.seeded, list(RING))
            self.seeded += POOL_USERS * POOL_BALLS * TAKERS
            self.blocks += 1
            self.tokens.update((n, _token(n, now)) for n in users)
            await conn.execute("ANALYZE")

    async def take(self, conn: asyncpg.Connection, count: int) -> list[Triple]:
        await self.ensure(conn, count)
        rows = await conn.fetch(
            "SELECT collector_n, owner, ids FROM bench_triples WHERE idx > $1 AND idx <= $2 "
            "ORDER BY idx",
            self.cursor,
            self.cursor + count,
        )
        self.cursor += count
        return [Triple(r[0], r[1], r[2].strip("{}")) for r in rows]


async def _seed_users(conn: asyncpg.Connection, users: list[int], now: datetime) -> None:
    await conn.execute(SEED_USERS, users, now)
    await conn.execute(SEED_SESSIONS, users, now)


async def _befriend(conn: asyncpg.Connection, pairs: list[tuple[int, int]], now: datetime) -> None:
    both = pairs + [(b, a) for a, b in pairs]
    await conn.execute(SEED_FRIENDS, [a for a, _ in both], [b for _, b in both], now)


# --- 1. friend collects on random pairs -----------------------------------------------------------


def _pgbench_script(path: Path, params: StealParams) -> dict[str, str]:
    """The API's statement, its binds as pgbench variables: ``me``, ``owner`` and ``ids`` from
    the next triple (``\\gset``), the rules' numbers fixed. Returns the ``-D`` variables."""
    # pgbench numbers every occurrence of a variable as its own parameter, so the ones PostgreSQL
    # cannot type from context (inside the INSERT's UNION) get the type the API's single $n has
    types = {
        "me": "uuid",
        "owner": "uuid",
        "now": "timestamptz",
        "fixed": "boolean",
        "allowed": "bigint",
    }
    sql = re.sub(r"--[^\n]*", "", STEAL_SOME.text)
    sql = re.sub(
        r"(?<![:\w])(?<!CAST\():(" + "|".join(types) + r")\b",
        lambda m: f"CAST(:{m.group(1)} AS {types[m.group(1)]})",
        sql,
    )
    lookup = (
        "SELECT me, owner, ids FROM bench_triples "
        "WHERE idx = (SELECT nextval('bench_cursor')) \\gset\n"
    )
    path.write_text(lookup + sql.strip() + ";\n")
    bind = params.bind(now=datetime.now(UTC).isoformat())
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in bind.items()}


def _run_pgbench(
    url: str, script: Path, variables: dict[str, str], seconds: float, logs: Path
) -> tuple[float, list[float]]:
    exe = shutil.which("pgbench") or "/usr/lib/postgresql/15/bin/pgbench"
    u = make_url(url)
    env = {**os.environ}
    if u.password:
        env["PGPASSWORD"] = u.password
    for old in logs.glob("pgbench*"):
        old.unlink()
    cmd = [
        exe,
        "-n",
        "-M",
        "prepared",
        "-c",
        str(CONCURRENCY),
        "-j",
        str(min(CONCURRENCY, os.cpu_count() or 1)),
        "-T",
        str(max(1, round(seconds))),
        *(a for k, v in variables.items() for a in ("-D", f"{k}={v}")),
        "-l",
        f"--log-prefix={logs / 'pgbench'}",
        "-f",
        str(script),
        "-h",
        u.host or "127.0.0.1",
        "-p",
        str(u.port or 5432),
        "-U",
        u.username or "postgres",
        u.database or "postgres",
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{out.stdout}\n{out.stderr}")
    tps = float(re.search(r"tps = ([\d.]+)", out.stdout).group(1))  # type: ignore[union-attr]
    latencies = [
        int(line.split()[2]) / 1e6
        for log in logs.glob("pgbench*")
        for line in log.read_text().splitlines()
    ]
    return tps, latencies


CURSOR = "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM bench_cursor"


async def _pgbench_side(
    url: str, pop: Population, params: StealParams, tmp: Path
) -> dict[str, float]:
    script = tmp / "steal.sql"
    variables = _pgbench_script(script, params)
    logs = tmp / "pgbench-logs"
    logs.mkdir(exist_ok=True)
    conn = await asyncpg.connect(url)
    try:
        # a 1 s warm-up sizes the measured run; pgbench walks the same cursor the HTTP side does
        await pop.ensure(conn, 20_000)
        before = await conn.fetchval("SELECT count(*) FROM ball_steals")
        await conn.execute("SELECT setval('bench_cursor', $1 + 1, false)", pop.cursor)
        first = pop.cursor
        tps, _ = _run_pgbench(url, script, variables, 1, logs)
        pop.cursor = await conn.fetchval(CURSOR)
        await pop.ensure(conn, int(tps * (DURATION + 1) * 1.5) + 1000)
        await conn.execute("SELECT setval('bench_cursor', $1 + 1, false)", pop.cursor)
        cpu = Cpu(None, str(make_url(url).database))
        cpu.start()
        tps, lat = _run_pgbench(url, script, variables, DURATION, logs)
        _line("same statement via pgbench -M prepared", tps, "tx/s", lat)
        transactions = await conn.fetchval(CURSOR) - pop.cursor
        cpu.report(transactions, DURATION, "transaction")
        pop.cursor = await conn.fetchval(CURSOR)
        # a call that took nothing (there should be none) adds no ball_steals row
        took = await conn.fetchval("SELECT count(*) FROM ball_steals") - before
    finally:
        await conn.close()
    print(
        f"    (a transaction: a PK lookup of the next triple (\\gset), then the take; "
        f"{took} takes recorded for {pop.cursor - first} transactions, warm-up included)",
        flush=True,
    )
    if took != pop.cursor - first:
        print("  !! some pgbench transactions took nothing: the sides did unequal work")
    return {"tps": tps}


async def _http_collects(
    port: int, url: str, pop: Population, cpu: Cpu, pgbench_tps: float
) -> dict[str, float]:
    conn = await asyncpg.connect(url)
    wrong: list[bytes] = []
    queue: list[bytes] = []

    def requests(triples: list[Triple]) -> list[bytes]:
        return [
            _request(
                "POST",
                f"/v1/friends/{t.owner}/collect",
                pop.tokens[t.collector],
                b'{"ball_ids":["' + t.ball.encode() + b'"]}',
            )
            for t in triples
        ]

    async def collect(c: Conn) -> bool:
        if not queue:
            return False
        status, body = await c.call(queue.pop())
        if status != 200 or b'"status":"collected"' not in body:
            wrong.append(body[:300])
        return True

    try:
        warm = pop.tokens[POOL_BASE]
        conns = await _connections(port, CONCURRENCY, _request("GET", "/v1/me", warm))
        queue = requests(await pop.take(conn, int(pgbench_tps * 2) + 200))[::-1]
        await _closed_loop(conns, collect, 1)  # warm-up
        queue = requests(await pop.take(conn, int(pgbench_tps * DURATION * 1.5) + 1000))[::-1]
        seeded = len(queue)
        cpu.start()
        n, lat, elapsed = await _closed_loop(conns, collect, DURATION)
        api = n / elapsed
        _line("POST /v1/friends/{owner}/collect (HTTP)", api, "calls/s", lat)
        cpu.report(n, elapsed, "call")
        if not queue:
            print(f"  (ran out of the {seeded} prepared triples after {elapsed:.1f} s)")
        ratio = api / pgbench_tps
        print(
            f"  ratio HTTP / pgbench: {ratio:.1%}   (target >= {COLLECT_TARGET:.0%}, i.e. "
            f"{pgbench_tps * COLLECT_TARGET:.0f} calls/s)",
            flush=True,
        )
        for c in conns:
            c.close()

        rate = api * PACE
        queue = requests(await pop.take(conn, int(rate * DURATION) + 10))[::-1]
        conns = await _connections(port, PACED_CONNECTIONS, _request("GET", "/v1/me", warm))
        cpu.start()
        paced, elapsed, peak = await _open_loop(conns, collect, rate, DURATION)
        _line(
            f"paced at {PACE:.0%}: {rate:.0f} calls/s (HTTP)",
            len(paced) / elapsed,
            "calls/s",
            paced,
        )
        print(f"    (latency from each call's scheduled start; peak {peak} in flight)", flush=True)
        cpu.report(len(paced), elapsed, "call")
        for c in conns:
            c.close()
        if wrong:
            print(f"  !! {len(wrong)} calls did not collect: {wrong[0]!r}", flush=True)
    finally:
        await conn.close()
    return {"api": api, "ratio": ratio, "paced_p99_ms": to_ms(p50_p99(paced)[1])}


# --- 2. the 07:00 storm -------------------------------------------------------------------------


async def _seed_storms(conn: asyncpg.Connection, owners: list[int], version: int) -> None:
    now = datetime.now(UTC)
    friends = [STORM_BASE + 1 + i for i in range(STORM_FRIENDS)]
    async with conn.transaction():
        await _seed_users(conn, friends + owners, now)
        await _befriend(conn, [(o, f) for o in owners for f in friends], now)
        await conn.execute(SEED_BALLS, owners, STORM_BALLS, STORM_BALLS, now, version)


async def _storm(port: int, url: str, owner: int, params: StealParams) -> dict[str, Any]:
    now = datetime.now(UTC)
    friends = [STORM_BASE + 1 + i for i in range(STORM_FRIENDS)]
    tokens = [_token(f, now) for f in friends]
    raw = [_request("POST", f"/v1/friends/{uid(owner)}/collect", t, b"") for t in tokens]
    # one authenticated call per connection first: accepted, and the server's pools warm
    conns = await _connections(port, STORM_FRIENDS, _request("GET", "/v1/me", tokens[0]))
    await asyncio.sleep(0.2)
    begin = time.perf_counter()
    for c, r in zip(conns, raw, strict=True):
        c.send(r)

    async def answer(c: Conn) -> tuple[int, bytes, float]:
        status, body = await c.response()
        return status, body, time.perf_counter() - begin

    answers = await asyncio.gather(*(answer(c) for c in conns))
    for c in conns:
        c.close()
    latencies = [a[2] for a in answers]
    failed = [a[1][:200] for a in answers if a[0] != 200]
    answered_g = sum(json.loads(a[1])["collected_g"] for a in answers if a[0] == 200)
    conn = await asyncpg.connect(url)
    try:
        balls = await conn.fetch(
            "SELECT b.id, b.amount_g, b.remaining_g, b.stolen_g, "
            "(SELECT coalesce(sum(amount_g), 0) FROM ball_steals s WHERE s.ball_id = b.id) AS st, "
            "(SELECT count(*) FROM ball_steals s WHERE s.ball_id = b.id) AS takers "
            "FROM energy_balls b WHERE b.user_id = $1",
            uid(owner),
        )
    finally:
        await conn.close()
    over = [
        str(b["id"])
        for b in balls
        if b["stolen_g"] > math.floor(b["amount_g"] * (1 - params.floor))
        or b["remaining_g"] != b["amount_g"] - b["stolen_g"]
        or b["stolen_g"] != b["st"]
    ]
    stolen = sum(b["stolen_g"] for b in balls)
    return {
        "latencies": latencies,
        "failed": failed,
        "over": over,
        "stolen": stolen,
        "answered_g": answered_g,
        "takes": sum(b["takers"] for b in balls),
        "amount": sum(b["amount_g"] for b in balls),
    }


async def _storms(
    port: int, url: str, owners: list[int], params: StealParams, admin: httpx.AsyncClient
) -> dict[str, float]:
    print(
        f"## 07:00 storm: {STORM_FRIENDS} friends send POST /v1/friends/{{owner}}/collect (all "
        f"ripe balls) on open connections at once; owner has {STORM_BALLS} ripe balls",
        flush=True,
    )
    ratios = []
    clean = True
    for r, owner in enumerate(owners, 1):
        s = await _storm(port, url, owner, params)
        p50, p99 = p50_p99(s["latencies"])
        ratios.append(p99 / p50)
        print(
            f"  round {r}: p50 {to_ms(p50):7.1f} ms   p99 {to_ms(p99):7.1f} ms   max "
            f"{to_ms(max(s['latencies'])):7.1f} ms   p99/p50 {p99 / p50:4.2f}   "
            f"{len(s['failed'])} failed",
            flush=True,
        )
        ok = not s["over"] and not s["failed"] and s["stolen"] == s["answered_g"]
        clean = clean and ok
        print(
            f"    {s['takes']} takes, {s['stolen']} g of {s['amount']} g taken (floor "
            f"{params.floor:.0%}); answers add up to {s['answered_g']} g; "
            f"{'no over-take' if not s['over'] else 'OVER-TAKE on ' + ', '.join(s['over'])}",
            flush=True,
        )
        if s["failed"]:
            print(f"    !! e.g. {s['failed'][0]!r}", flush=True)
    check = await admin.get(
        "/admin/v1/ledger/check", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    check.raise_for_status()
    body = check.json()
    broken = [name for name, result in body["checks"].items() if not result["ok"]]
    print(
        f"  ledger check: {'ok' if body['ok'] else 'BROKEN ' + ', '.join(broken)}  "
        f"{json.dumps(body['totals'])}",
        flush=True,
    )
    return {"ratio_storm": max(ratios), "clean": float(clean and body["ok"])}


# --- 3. GET /v1/friends with LIST_FRIENDS friends -----------------------------------------------


async def _seed_list(conn: asyncpg.Connection, version: int) -> None:
    now = datetime.now(UTC)
    friends = [LIST_BASE + 1 + i for i in range(LIST_FRIENDS)]
    async with conn.transaction():
        await _seed_users(conn, [LIST_BASE, *friends], now)
        await _befriend(conn, [(LIST_BASE, f) for f in friends], now)
        await conn.execute(SEED_BALLS, friends, LIST_BALLS, LIST_BALLS - 1, now, version)


class _Capture:
    """Stands in for a session to catch the statement ``friend_summaries`` runs."""

    async def execute(self, statement: Any, params: dict[str, Any]) -> list[Any]:
        self.statement, self.params = statement, params
        return []


async def _friend_list(port: int, url: str, params: StealParams) -> dict[str, float]:
    print(
        f"## GET /v1/friends for a user with {LIST_FRIENDS} friends ({LIST_BALLS} balls each, "
        f"{LIST_BALLS - 1} ripe), one call at a time, {LIST_SECONDS:.0f} s each",
        flush=True,
    )
    raw = _request("GET", "/v1/friends", _token(LIST_BASE, datetime.now(UTC)))
    sizes: list[int] = []

    async def listing(c: Conn) -> bool:
        status, body = await c.call(raw)
        if status != 200:
            raise RuntimeError(f"GET /v1/friends: {status} {body[:200]!r}")
        sizes.append(len(body))
        return True

    conns = await _connections(port, 1, raw)
    body = (await conns[0].call(raw))[1]
    count = len(json.loads(body)["friends"])
    await _closed_loop(conns, listing, 0.5)  # warm-up
    n, lat, elapsed = await _closed_loop(conns, listing, LIST_SECONDS)
    conns[0].close()
    _line("GET /v1/friends (HTTP)", n / elapsed, "calls/s", lat)
    print(f"    ({count} friends listed, {sizes[-1]} bytes of JSON)", flush=True)

    capture = _Capture()
    await friend_summaries(capture, uid(LIST_BASE), datetime.now(UTC), params)  # type: ignore[arg-type]
    compiled = capture.statement.compile(dialect=asyncpg_dialect.dialect())
    bind = {**capture.params, "share": Decimal(capture.params["share"])}
    bind["floor"] = Decimal(capture.params["floor"])
    args = [bind[name] for name in compiled.positiontup]
    conn = await asyncpg.connect(url)
    try:
        sql = str(compiled)
        rows = await conn.fetch(sql, *args)
        assert len(rows) == LIST_FRIENDS, len(rows)

        async def query(_c: object) -> bool:
            await conn.fetch(sql, *args)
            return True

        n, sql_lat, elapsed = await _closed_loop([None], query, LIST_SECONDS)  # type: ignore[list-item]
    finally:
        await conn.close()
    _line("friend_summaries statement via asyncpg", n / elapsed, "calls/s", sql_lat)
    return {"p50_ms": to_ms(p50_p99(lat)[0])}


# --- the run ------------------------------------------------------------------------------------


def _verdict(value: float, target: float, higher_is_better: bool = True, unit: str = "") -> str:
    ok = value >= target if higher_is_better else value <= target
    if unit == "%":
        by = f"{abs(value - target) * 100:.1f} points"
    else:
        by = f"{abs(value - target):.1f}{unit}"
    how = "to spare" if ok else "short" if higher_is_better else "over"
    return f"{'PASS' if ok else 'MISS'} ({by} {how})"


class Server:
    def __init__(self, env: dict[str, str], workers: int) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "canopy"),
                "serve",
                "--port",
                str(self.port),
                "--no-worker",
                "--workers",
                str(workers),
            ],
            env=env,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(600):
            try:
                if httpx.get(self.base + "/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("canopy serve exited")
            time.sleep(0.1)
        raise RuntimeError("canopy serve did not become ready")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _setup(url: str) -> tuple[Population, int]:
    conn = await asyncpg.connect(url)
    try:
        version = await conn.fetchval("SELECT max(version) FROM rules_versions")
        await conn.execute(TRIPLES_DDL)
        pop = Population(url, version)
        await _seed_list(conn, version)
        await _seed_storms(
            conn,
            [STORM_BASE + 1000 + r for r in range(STORM_ROUNDS * len(WORKER_CHOICES))],
            version,
        )
        await pop.ensure(conn, 1)
    finally:
        await conn.close()
    return pop, version


async def _config(
    server: Server,
    workers: int,
    url: str,
    pop: Population,
    params: StealParams,
    pgbench_tps: float,
    storm_owners: list[int],
) -> dict[str, float]:
    print(
        f"# {workers} uvicorn worker(s): friend collects, concurrency {CONCURRENCY}, "
        f"{DURATION:.0f} s each",
        flush=True,
    )
    cpu = Cpu(server.proc.pid, str(make_url(url).database))
    collects = await _http_collects(server.port, url, pop, cpu, pgbench_tps)
    async with httpx.AsyncClient(base_url=server.base, timeout=120) as admin:
        storm = await _storms(server.port, url, storm_owners, params, admin)
    listing = await _friend_list(server.port, url, params)
    return {"workers": workers, **collects, **storm, "list_p50_ms": listing["p50_ms"]}


def _summary(results: list[dict[str, float]], pgbench_tps: float) -> None:
    best = max(results, key=lambda r: r["ratio"])
    print(
        f"## summary (best: {int(best['workers'])} worker(s); pgbench {pgbench_tps:.0f} tx/s)",
        flush=True,
    )
    for r in results:
        print(
            f"  {int(r['workers'])} worker(s): collects {r['api']:.0f}/s = {r['ratio']:.1%} of "
            f"pgbench, paced p99 {r['paced_p99_ms']:.1f} ms, storm p99/p50 {r['ratio_storm']:.2f},"
            f" GET /v1/friends p50 {r['list_p50_ms']:.1f} ms",
            flush=True,
        )
    rows = [
        (
            f"collect HTTP / pgbench (>= {COLLECT_TARGET:.0%})",
            f"{best['ratio']:.1%}",
            _verdict(best["ratio"], COLLECT_TARGET, unit="%"),
        ),
        (
            f"paced collect p99 (<= {PACED_P99_TARGET_MS:.0f} ms)",
            f"{best['paced_p99_ms']:.1f} ms",
            _verdict(best["paced_p99_ms"], PACED_P99_TARGET_MS, False, " ms"),
        ),
        (
            f"storm p99/p50, worst round (<= {STORM_RATIO_TARGET:.0f})",
            f"{best['ratio_storm']:.2f}",
            _verdict(best["ratio_storm"], STORM_RATIO_TARGET, False),
        ),
        (
            "storm: no over-take, ledger check ok",
            "yes" if best["clean"] else "NO",
            "PASS" if best["clean"] else "MISS",
        ),
        (
            f"GET /v1/friends p50, {LIST_FRIENDS} friends (< {LIST_P50_TARGET_MS:.0f} ms)",
            f"{best['list_p50_ms']:.1f} ms",
            _verdict(best["list_p50_ms"], LIST_P50_TARGET_MS, False, " ms"),
        ),
    ]
    for name, value, verdict in rows:
        print(f"  {name:<42} {value:>9}   {verdict}")
    print(
        f"  ({os.cpu_count()} cores shared by the server, PostgreSQL, Redis, pgbench and this "
        "load generator; the paced phase runs at "
        f"{PACE:.0%} of each setting's measured HTTP maximum)",
        flush=True,
    )


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    started = []
    db = os.environ.get("CANOPY_BENCH_DATABASE_URL")
    redis = os.environ.get("CANOPY_BENCH_REDIS_URL")
    if not db:
        started.append(ensure_postgres(root / ".canopy-bench"))
        db = started[-1].url
    if not redis:
        started.append(ensure_redis(root / ".canopy-bench"))
        redis = started[-1].url
    name = f"canopy_bench_{uuid.uuid4().hex[:8]}"
    admin = plain_dsn(normalize_database_url(db))
    _run(exec_sql(admin, f'CREATE DATABASE "{name}"'))
    url = make_url(normalize_database_url(db)).set(database=name).render_as_string(False)
    plain = plain_dsn(url)
    tmp = Path(tempfile.mkdtemp(prefix="canopy-bench-social-"))
    rules, params = _rules(root, tmp)
    env = {
        **os.environ,
        "CANOPY_DATABASE_URL": url,
        "CANOPY_REDIS_URL": redis,
        "CANOPY_LOG_LEVEL": "WARNING",
        "CANOPY_DATA_DIR": str(root / ".canopy-bench"),
        "CANOPY_RULES": str(rules),
        "CANOPY_ADMIN_TOKEN": ADMIN_TOKEN,
        "CANOPY_JWT_SECRET": JWT_SECRET,
    }
    server: Server | None = None
    began = time.perf_counter()
    try:
        print(
            f"# bench social: friend collects, the 07:00 storm, the friend list (server, "
            f"PostgreSQL, pgbench and the load generator share {os.cpu_count()} cores; load "
            f"average before the run {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        results = []
        pgbench_tps = 0.0
        pop: Population | None = None
        owners = [STORM_BASE + 1000 + r for r in range(STORM_ROUNDS * len(WORKER_CHOICES))]
        for i, workers in enumerate(WORKER_CHOICES):
            server = Server(env, workers)  # the first start migrates and publishes the rules
            if pop is None:
                seeding = time.perf_counter()
                pop, _ = _run(_setup(plain))
                print(
                    f"  (seeded in {time.perf_counter() - seeding:.0f} s: {POOL_USERS} users in a "
                    f"friendship ring, {STORM_FRIENDS} storm friends, {LIST_FRIENDS} listed "
                    "friends)",
                    flush=True,
                )
                print(
                    f"## pgbench: STEAL_SOME, one ball per call, concurrency {CONCURRENCY}, "
                    f"{DURATION:.0f} s (the idle server is up)",
                    flush=True,
                )
                pgbench_tps = _run(_pgbench_side(plain, pop, params, tmp))["tps"]
            # statistics that know about takes (autovacuum may be off on a test server): with
            # none at the last ANALYZE, the leaderboard update after each collect scans every
            # take of the week through ix_ledger_entries_collected_at
            _run(exec_sql(plain, "ANALYZE"))
            mine = owners[i * STORM_ROUNDS : (i + 1) * STORM_ROUNDS]
            result = _run(_config(server, workers, plain, pop, params, pgbench_tps, mine))
            results.append(result)
            server.stop()
            server = None
        assert pop is not None
        print(
            f"  (population: {pop.blocks} x {POOL_USERS} users with {len(RING)} friends and "
            f"{POOL_BALLS} ripe balls each; {pop.cursor} of {pop.seeded} triples used; run took "
            f"{time.perf_counter() - began:.0f} s; load average now {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        _summary(results, pgbench_tps)
    finally:
        if server is not None:
            server.stop()
        _run(exec_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        shutil.rmtree(tmp, ignore_errors=True)
        for s in reversed(started):
            s.stop()


__all__ = ["main"]
