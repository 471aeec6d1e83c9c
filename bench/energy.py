"""The energy write paths, each beside a raw-PostgreSQL baseline in the same run:

1. Batch ingestion: 100-event batches through ``POST /partner/v1/activities/batch`` (kind
   ``etc_toll``: 23 g per event, no cap, so every event mints a ball) versus asyncpg
   ``copy_records_to_table`` inserting the same activity rows, 100 per COPY, into a scratch copy of
   ``activities``. Then the HTTP side again, paced open-loop at 80 % of its measured maximum, for
   the latency a batch sees below saturation.
2. Owner collects: ``POST /v1/forest/collect`` (no body: every ripe ball) versus ``pgbench``
   running the very statement the API runs (``app.energy.forest.COLLECT_ALL``). Each call, on
   either side, is for a user never collected before, who owns ``BALLS`` ripe balls: it takes all
   of them, writes two ledger entries per ball and credits the balance.

Servers: ``CANOPY_BENCH_DATABASE_URL`` / ``CANOPY_BENCH_REDIS_URL`` (or the embedded ones under
``.canopy-bench``). A fresh database is created and dropped. The server is ``canopy serve
--no-worker --workers BENCH_WORKERS`` with a rules file whose ``[limits]`` are lifted; the load
generator (httpx, this process) and pgbench share the machine's cores with it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import psutil
from sqlalchemy.engine import make_url

from app.config import normalize_database_url
from app.core.embedded import ensure_postgres, ensure_redis
from app.core.security import JWT_ALGORITHM, JWT_AUDIENCE
from app.energy.forest import COLLECT_ALL
from app.rules.schema import Rules
from bench.common import exec_sql, p50_p99, plain_dsn, to_ms

DURATION = float(os.environ.get("BENCH_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
BATCH = 100  # events per ingestion batch
BALLS = 10  # ripe balls per user in the collect phase
KIND = "etc_toll"  # partner-only, 23 g per event, no cap
PACE = 0.8  # the paced phase runs at this share of the measured maximum
INGEST_TARGET = 0.30  # HTTP rows/s as a share of COPY rows/s
COLLECT_TARGET = 0.60  # HTTP collects/s as a share of pgbench tps
PACED_P99_TARGET_MS = 50.0
LIMIT = "1000000/minute"
ADMIN_TOKEN = "bench-admin-" + uuid.uuid4().hex
JWT_SECRET = "bench-jwt-" + uuid.uuid4().hex
# bench users for the collect phase get ids computable from an integer, so pgbench can pick one
USER_ID_SQL = "CAST(lpad(to_hex(CAST({} AS bigint)), 32, '0') AS uuid)"
PGBENCH_BASE = 1 << 32  # pgbench users start here; HTTP users at 1

BALL_COLUMNS = (
    "id",
    "user_id",
    "kind",
    "ref",
    "amount_g",
    "remaining_g",
    "stealable",
    "created_at",
    "ripens_at",
    "expires_at",
    "expired_g",
    "rules_version",
)
ENTRY_COLUMNS = (
    "transfer_id",
    "account",
    "user_id",
    "ball_id",
    "amount_g",
    "reason",
    "ref",
    "rules_version",
    "at",
)
ACTIVITY_COLUMNS = (
    "user_id",
    "source",
    "external_id",
    "kind",
    "occurred_at",
    "received_at",
    "quantity",
    "unit",
    "attributes",
    "region",
    "factor_g",
    "rules_version",
    "computed_g",
    "energy_g",
    "status",
    "ball_id",
)


def _bench_user_id(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def _rules_file(root: Path, into: Path) -> Path:
    """The shipped rules with every rate limit the schema knows lifted out of the way."""
    text = (root / "rules" / "default.toml").read_text()
    start = text.index("\n[limits]")
    rest = text[start + 1 :]
    after = re.search(r"\n\[", rest)
    end = start + 1 + after.start() + 1 if after else len(text)
    names = Rules.model_fields["limits"].annotation.model_fields  # type: ignore[union-attr]
    limits = "[limits]\n" + "".join(f'{name} = "{LIMIT}"\n' for name in names)
    path = into / "rules.toml"
    path.write_text(text[: start + 1] + limits + text[end:])
    return path


async def _closed_loop(
    call: Callable[[int], Awaitable[bool]], seconds: float, concurrency: int
) -> tuple[int, list[float], float]:
    """``concurrency`` clients each calling back to back until the deadline (or until ``call``
    returns False: nothing left to do). Returns (calls, latencies, elapsed seconds)."""
    latencies: list[float] = []
    begin = time.perf_counter()
    deadline = begin + seconds

    async def client(index: int) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            if not await call(index):
                return
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return len(latencies), latencies, time.perf_counter() - begin


async def _open_loop(
    call: Callable[[int], Awaitable[bool]], rate: float, seconds: float
) -> tuple[list[float], float, int]:
    """Start call ``i`` at ``i / rate`` whatever the earlier ones are doing (no coordinated
    omission: a latency runs from the scheduled start). Returns (latencies, elapsed, peak in
    flight)."""
    latencies: list[float] = []
    total = max(1, int(rate * seconds))
    in_flight = peak = 0
    begin = time.perf_counter()

    async def one(index: int, scheduled: float) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await call(index)
        latencies.append(time.perf_counter() - scheduled)
        in_flight -= 1

    tasks = []
    for index in range(total):
        scheduled = begin + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, scheduled)))
    await asyncio.gather(*tasks)
    return latencies, time.perf_counter() - begin, peak


def _line(name: str, rate: float, unit: str, latencies: list[float] | None = None) -> None:
    text = f"  {name:<44} {rate:>9.0f} {unit}"
    if latencies:
        p50, p99 = p50_p99(latencies)
        text += f"   p50 {to_ms(p50):7.2f} ms   p99 {to_ms(p99):7.2f} ms"
    print(text, flush=True)


class Cpu:
    """CPU seconds used by the server (its process and uvicorn's workers) and by this process,
    so a phase can say what one call costs in Python on either side of the socket."""

    def __init__(self, server_pid: int) -> None:
        self.server = psutil.Process(server_pid)
        self.me = psutil.Process()
        self.marks = (0.0, 0.0)

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

    def _now(self) -> tuple[float, float]:
        return (
            self._used([self.server, *self.server.children(recursive=True)]),
            self._used([self.me]),
        )

    def start(self) -> None:
        self.marks = self._now()

    def report(self, calls: int, elapsed: float, unit: str) -> None:
        server, client = (b - a for a, b in zip(self.marks, self._now(), strict=True))
        print(
            f"    CPU per {unit}: server {to_ms(server / calls):.1f} ms "
            f"({server / elapsed:.2f} cores), load generator {to_ms(client / calls):.1f} ms "
            f"({client / elapsed:.2f} cores)",
            flush=True,
        )


# --- 1. batch ingestion -------------------------------------------------------------------------


class Events:
    """Unique events for the ingestion phase: client ``c``'s batches are for user ``c``."""

    def __init__(self, users: list[uuid.UUID], prefix: str) -> None:
        self.users = users
        self.prefix = prefix
        self.seq = itertools.count()

    def batch(self, client: int) -> tuple[uuid.UUID, list[tuple[str, datetime]]]:
        n = next(self.seq)
        user = self.users[client % len(self.users)]
        now = datetime.now(UTC)
        return user, [
            (f"{self.prefix}{n}-{j}", now - timedelta(seconds=60 + 30 * j)) for j in range(BATCH)
        ]

    def body(self, client: int) -> bytes:
        user, events = self.batch(client)
        return json.dumps(
            {
                "activities": [
                    {
                        "id": ext,
                        "user_id": str(user),
                        "kind": KIND,
                        "occurred_at": at.isoformat(timespec="seconds"),
                    }
                    for ext, at in events
                ]
            }
        ).encode()


async def _ingestion(c: httpx.AsyncClient, url: str, cpu: Cpu) -> dict[str, float]:
    created = await c.post(
        "/admin/v1/partners",
        json={"name": "bench toll operator", "scopes": ["activities"]},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    created.raise_for_status()
    partner = created.json()
    key = {"Authorization": f"Bearer {partner['api_key']}", "Content-Type": "application/json"}

    async def register(i: int) -> uuid.UUID:
        r = await c.post(
            "/v1/auth/register", json={"handle": f"toll{i}", "password": "benchmark-pw"}
        )
        r.raise_for_status()
        return uuid.UUID(r.json()["user"]["id"])

    users = list(await asyncio.gather(*(register(i) for i in range(CONCURRENCY))))
    minted = 0
    wrong: list[bytes] = []

    def poster(events: Events) -> Callable[[int], Awaitable[bool]]:
        async def post(client: int) -> bool:
            nonlocal minted
            r = await c.post(
                "/partner/v1/activities/batch", content=events.body(client), headers=key
            )
            count = r.content.count(b'"status":"minted"')
            if r.status_code != 200 or count != BATCH:
                wrong.append(r.content[:300])
            minted += count
            return True

        return post

    print(
        f"## ingestion: {BATCH}-event {KIND} batches for {len(users)} users "
        f"(one per client), concurrency {CONCURRENCY}, {DURATION:.0f} s each",
        flush=True,
    )
    await _closed_loop(poster(Events(users, "w")), 2, CONCURRENCY)  # warm-up
    cpu.start()
    n, lat, elapsed = await _closed_loop(poster(Events(users, "m")), DURATION, CONCURRENCY)
    api_batches = n / elapsed
    api_rows = api_batches * BATCH
    _line("POST /partner/v1/activities/batch (HTTP)", api_rows, "rows/s", lat)
    cpu.report(n, elapsed, "batch")

    conn = await asyncpg.connect(url)
    try:
        version = await conn.fetchval("SELECT max(version) FROM rules_versions")
        # same columns, defaults, checks and indexes; LIKE copies no foreign keys
        await conn.execute(
            "CREATE TABLE bench_copy (LIKE activities INCLUDING ALL); "
            "CREATE TABLE bench_copy_balls (LIKE energy_balls INCLUDING ALL); "
            "CREATE TABLE bench_copy_ledger (LIKE ledger_entries INCLUDING ALL)"
        )
    finally:
        await conn.close()
    source = f"partner:{partner['id']}"
    copy_events = Events(users, "copy")

    pool = await asyncpg.create_pool(url, min_size=CONCURRENCY, max_size=CONCURRENCY)
    assert pool is not None

    def activity_records(
        user: uuid.UUID, events: list[tuple[str, datetime]], now: datetime
    ) -> list[tuple[Any, ...]]:
        return [
            (
                user,
                source,
                ext,
                KIND,
                at,
                now,
                None,
                None,
                None,
                None,
                Decimal(23),
                version,
                23,
                23,
                "minted",
                uuid.uuid4(),
            )
            for ext, at in events
        ]

    async def copy(client: int) -> bool:
        user, events = copy_events.batch(client)
        records = activity_records(user, events, datetime.now(UTC))
        async with pool.acquire() as cx:
            await cx.copy_records_to_table("bench_copy", records=records, columns=ACTIVITY_COLUMNS)
        return True

    async def copy_all(client: int) -> bool:
        """Everything the API writes per event: activity, ball, both sides of the mint."""
        user, events = copy_events.batch(client)
        now = datetime.now(UTC)
        activities = activity_records(user, events, now)
        ripens, expires = now + timedelta(days=1), now + timedelta(days=4)
        balls = [
            (a[15], user, KIND, f"activity:{source}:{a[2]}", 23, 23, True, now, ripens, expires)
            for a in activities
        ]
        entries: list[tuple[Any, ...]] = []
        for ball in balls:
            transfer, ref = uuid.uuid4(), ball[3]
            entries.append((transfer, "system:minted", None, None, -23, "mint", ref, version, now))
            entries.append((transfer, "ball", user, ball[0], 23, "mint", ref, version, now))
        async with pool.acquire() as cx, cx.transaction():
            await cx.copy_records_to_table(
                "bench_copy", records=activities, columns=ACTIVITY_COLUMNS
            )
            await cx.copy_records_to_table(
                "bench_copy_balls",
                records=[(*ball, 0, version) for ball in balls],
                columns=BALL_COLUMNS,
            )
            await cx.copy_records_to_table(
                "bench_copy_ledger",
                records=entries,
                columns=ENTRY_COLUMNS,
            )
        return True

    await _closed_loop(copy, 1, CONCURRENCY)  # warm-up
    n, lat, elapsed = await _closed_loop(copy, DURATION, CONCURRENCY)
    copy_rows = n * BATCH / elapsed
    _line(f"asyncpg copy_records_to_table, {BATCH}/COPY", copy_rows, "rows/s", lat)
    ratio = api_rows / copy_rows
    print(f"  ratio HTTP / COPY: {ratio:.1%}   (target >= {INGEST_TARGET:.0%})", flush=True)
    await _closed_loop(copy_all, 1, CONCURRENCY)  # warm-up
    n, lat, elapsed = await _closed_loop(copy_all, DURATION, CONCURRENCY)
    await pool.close()
    all_rows = n * BATCH / elapsed
    _line("  for scale: COPY of all 4 rows per event", all_rows, "events/s", lat)
    print(
        f"    (activity + ball + 2 ledger entries, {BATCH} events per transaction, no FK checks; "
        f"HTTP reaches {api_rows / all_rows:.1%} of it)",
        flush=True,
    )

    rate = api_batches * PACE
    cpu.start()
    paced, elapsed, peak = await _open_loop(poster(Events(users, "p")), rate, DURATION)
    _line(
        f"paced at {PACE:.0%}: {rate:.1f} batches/s (HTTP)",
        len(paced) * BATCH / elapsed,
        "rows/s",
        paced,
    )
    print(f"    (latency from each batch's scheduled start; peak {peak} in flight)", flush=True)
    cpu.report(len(paced), elapsed, "batch")
    if wrong:
        print(f"  !! {len(wrong)} batches not fully minted, e.g. {wrong[0]!r}", flush=True)
    conn = await asyncpg.connect(url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM activities")
        balls = await conn.fetchval("SELECT count(*) FROM energy_balls")
    finally:
        await conn.close()
    print(
        f"  check: {minted} events answered minted; {stored} activities, {balls} balls stored",
        flush=True,
    )
    return {"ratio": ratio, "paced_p99_ms": to_ms(p50_p99(paced)[1])}


# --- 2. owner collects --------------------------------------------------------------------------

SEED_USERS = f"""
INSERT INTO users (id, handle, password_hash, display_name, timezone, region, balance_g,
                   collected_total_g, co2e_avoided_g, created_at, updated_at, erased_at)
SELECT {USER_ID_SQL.format("i")}, 'bench' || i, NULL, NULL, 'Asia/Shanghai', NULL, 0, 0, 0,
       $3, $3, NULL
FROM generate_series(CAST($1 AS bigint), CAST($2 AS bigint)) AS i
"""

SEED_SESSIONS = """
INSERT INTO auth_sessions (id, user_id, created_at, refreshed_at, revoked_at, revoked_reason)
SELECT gen_random_uuid(), id, $2, $2, NULL, NULL FROM users WHERE id = ANY($1::uuid[])
RETURNING user_id, id
"""

# ripe balls and their mint transfers (system:minted -> ball), as app.energy.ingest.mint_balls
SEED_BALLS = f"""
WITH balls AS (
    INSERT INTO energy_balls (id, user_id, kind, ref, amount_g, remaining_g, stealable,
                              created_at, ripens_at, expires_at, expired_at, expired_g,
                              rules_version)
    SELECT gen_random_uuid(), {USER_ID_SQL.format("i")}, '{KIND}',
           'activity:bench:' || i || '-' || j, 10 + (i * 7 + j) % 50, 10 + (i * 7 + j) % 50,
           true, $3, $4, $5, NULL, 0, $6
    FROM generate_series(CAST($1 AS bigint), CAST($2 AS bigint)) AS i,
         generate_series(1, {BALLS}) AS j
    RETURNING id, user_id, amount_g, ref
), moves AS MATERIALIZED (
    SELECT balls.*, gen_random_uuid() AS transfer FROM balls
)
INSERT INTO ledger_entries (transfer_id, account, user_id, ball_id, amount_g, balance_after_g,
                            reason, ref, rules_version, at)
SELECT transfer, 'system:minted', CAST(NULL AS uuid), CAST(NULL AS uuid), -amount_g,
       CAST(NULL AS bigint), 'mint', ref, $6, $3 FROM moves
UNION ALL
SELECT transfer, 'ball', user_id, id, amount_g, NULL, 'mint', ref, $6, $3 FROM moves
"""


async def _seed(url: str, first: int, count: int) -> list[str]:
    """``count`` users from index ``first``, each with ``BALLS`` balls that ripened a day ago and
    one live login; returns an access token per user, signed as the server signs them."""
    now = datetime.now(UTC)
    last = first + count - 1
    conn = await asyncpg.connect(url)
    try:
        version = await conn.fetchval("SELECT max(version) FROM rules_versions")
        for lo in range(first, last + 1, 10_000):
            hi = min(lo + 10_000 - 1, last)
            async with conn.transaction():
                await conn.execute(SEED_USERS, lo, hi, now)
                await conn.execute(
                    SEED_BALLS,
                    lo,
                    hi,
                    now - timedelta(days=2),
                    now - timedelta(days=1),
                    now + timedelta(days=2),
                    version,
                )
        logins = await conn.fetch(
            SEED_SESSIONS, [_bench_user_id(i) for i in range(first, last + 1)], now
        )
        await conn.execute("ANALYZE users; ANALYZE energy_balls; ANALYZE ledger_entries")
    finally:
        await conn.close()
    exp = int((now + timedelta(hours=1)).timestamp())
    return [
        jwt.encode(
            {
                "sub": str(row["user_id"]),
                "sid": str(row["id"]),
                "aud": JWT_AUDIENCE,
                "iat": int(now.timestamp()),
                "exp": exp,
            },
            JWT_SECRET,
            algorithm=JWT_ALGORITHM,
        )
        for row in logins
    ]


def _sized(rate: float, margin: float) -> int:
    """Users for ``DURATION`` seconds at ``margin`` times the warm-up's rate."""
    return max(int(rate * DURATION * margin), 20 * CONCURRENCY)


def _pgbench_script(path: Path) -> None:
    """The API's statement, with ``:user`` computed from ``:i`` (this client's next user)."""
    # pgbench numbers every occurrence of a variable as its own parameter, so the ones PostgreSQL
    # cannot type from context (inside the INSERT's UNION) get the cast the API's single $n gets
    sql = (
        COLLECT_ALL.text.replace(":user", USER_ID_SQL.format(":i"))
        .replace(":now", "CAST(:now AS timestamptz)")
        .strip()
    )
    path.write_text(
        "\\set k :k + 1\n\\set i :base + :client_id * :per + :k\n" + sql + ";\n",
    )


def _run_pgbench(
    url: str, script: Path, base: int, per: int, logs: Path
) -> tuple[float, list[float]]:
    """pgbench -M prepared, CONCURRENCY clients; client ``c`` collects users ``base + c * per + 1``
    to ``base + (c + 1) * per``, one per transaction. Returns (tps, latencies)."""
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
        "-t",
        str(per),
        "-D",
        "k=0",
        "-D",
        f"base={base}",
        "-D",
        f"per={per}",
        "-D",
        f"now={datetime.now(UTC).isoformat()}",
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


async def _collects(c: httpx.AsyncClient, url: str, tmp: Path, cpu: Cpu) -> dict[str, float]:
    print(
        f"## owner collects: every call takes all {BALLS} ripe balls of a user not collected "
        f"before (lock, empty, credit, {2 * BALLS} ledger entries); concurrency {CONCURRENCY}, "
        f"{DURATION:.0f} s each",
        flush=True,
    )
    # Each side warms up on users of its own, which also sizes its measured run, so that every
    # measured call takes BALLS balls: HTTP runs DURATION seconds over twice the users the
    # warm-up's rate needs (warm-ups run slow); pgbench runs through exactly the users that
    # its warm-up's rate needs for DURATION seconds (-t), however long that takes.
    started = time.perf_counter()
    warm = 60 * CONCURRENCY
    queue: Iterator[str] = iter(await _seed(url, 1, warm))
    short: list[bytes] = []

    async def collect(_client: int) -> bool:
        token = next(queue, None)
        if token is None:
            return False
        r = await c.post("/v1/forest/collect", headers={"Authorization": f"Bearer {token}"})
        if r.status_code != 200 or len(r.json()["results"]) != BALLS:
            short.append(r.content[:300])
        return True

    n, _, elapsed = await _closed_loop(collect, 2, CONCURRENCY)
    http_users = _sized(n / elapsed, 2)
    queue = iter(await _seed(url, warm + 1, http_users))
    short.clear()
    cpu.start()
    n, lat, elapsed = await _closed_loop(collect, DURATION, CONCURRENCY)
    api = n / elapsed
    _line(f"POST /v1/forest/collect (HTTP), {n} calls", api, "calls/s", lat)
    cpu.report(n, elapsed, "call")
    if n == http_users:
        print(f"  (ran out of users after {elapsed:.1f} s)", flush=True)
    if short:
        print(f"  !! {len(short)} calls did not collect {BALLS} balls: {short[0]!r}", flush=True)

    script = tmp / "collect.sql"
    _pgbench_script(script)
    logs = tmp / "pgbench-logs"
    logs.mkdir()
    warm_per = 50
    await _seed(url, PGBENCH_BASE, warm_per * CONCURRENCY)
    tps, _ = _run_pgbench(url, script, PGBENCH_BASE - 1, warm_per, logs)
    per = _sized(tps, 1) // CONCURRENCY + 1
    base = PGBENCH_BASE + warm_per * CONCURRENCY
    await _seed(url, base, per * CONCURRENCY)
    tps, lat = _run_pgbench(url, script, base - 1, per, logs)
    _line(f"same statement, pgbench -M prepared, {per * CONCURRENCY} tx", tps, "tx/s", lat)
    ratio = api / tps
    print(f"  ratio HTTP / pgbench: {ratio:.1%}   (target >= {COLLECT_TARGET:.0%})", flush=True)

    conn = await asyncpg.connect(url)
    try:
        # every measured user, on either side, must have been emptied exactly once
        # each measured call emptied one user: count them on both sides
        emptied = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE id < $2) AS http, count(*) FILTER (WHERE id >= $3) "
            "AS pgbench FROM users WHERE handle LIKE 'bench%' AND id >= $1 "
            "AND (id < $2 OR id >= $3) AND collected_total_g > 0 AND NOT EXISTS ("
            "SELECT 1 FROM energy_balls b WHERE b.user_id = users.id AND b.remaining_g > 0)",
            _bench_user_id(warm + 1),
            _bench_user_id(PGBENCH_BASE),
            _bench_user_id(base),
        )
    finally:
        await conn.close()
    print(
        f"  (seeded {warm + http_users} + {(warm_per + per) * CONCURRENCY} users x {BALLS} ripe "
        f"balls; users emptied by the measured runs: HTTP {emptied['http']}, pgbench "
        f"{emptied['pgbench']}; phase took {time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    check = await c.get(
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
    return {"ratio": ratio}


# --- the run ------------------------------------------------------------------------------------


def _verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    if higher_is_better:
        by = (
            f"{(value - target) * 100:+.1f} points"
            if ok
            else f"{(target - value) * 100:.1f} points short"
        )
    else:
        by = f"{target - value:.1f} ms to spare" if ok else f"{value - target:.1f} ms over"
    return f"{'PASS' if ok else 'MISS'} ({by})"


async def _bench(base: str, url: str, tmp: Path, cpu: Cpu) -> None:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as c:
        ingestion = await _ingestion(c, url, cpu)
        collects = await _collects(c, url, tmp, cpu)
    rows = [
        (
            f"ingestion HTTP / COPY (>= {INGEST_TARGET:.0%})",
            f"{ingestion['ratio']:.1%}",
            _verdict(ingestion["ratio"], INGEST_TARGET),
        ),
        (
            f"paced ingestion p99 (<= {PACED_P99_TARGET_MS:.0f} ms)",
            f"{ingestion['paced_p99_ms']:.1f} ms",
            _verdict(ingestion["paced_p99_ms"], PACED_P99_TARGET_MS, higher_is_better=False),
        ),
        (
            f"collect HTTP / pgbench (>= {COLLECT_TARGET:.0%})",
            f"{collects['ratio']:.1%}",
            _verdict(collects["ratio"], COLLECT_TARGET),
        ),
    ]
    print("## summary")
    for name, value, verdict in rows:
        print(f"  {name:<36} {value:>9}   {verdict}")
    print(
        f"  ({WORKERS} uvicorn worker(s), {os.cpu_count()} cores shared with the httpx load "
        "generator and pgbench)",
        flush=True,
    )


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
    asyncio.run(exec_sql(admin, f'CREATE DATABASE "{name}"'))
    url = make_url(normalize_database_url(db)).set(database=name).render_as_string(False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp(prefix="canopy-bench-energy-"))
    env = {
        **os.environ,
        "CANOPY_DATABASE_URL": url,
        "CANOPY_REDIS_URL": redis,
        "CANOPY_LOG_LEVEL": "WARNING",
        "CANOPY_DATA_DIR": str(root / ".canopy-bench"),
        "CANOPY_RULES": str(_rules_file(root, tmp)),
        "CANOPY_ADMIN_TOKEN": ADMIN_TOKEN,
        "CANOPY_JWT_SECRET": JWT_SECRET,
    }
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "canopy"),
            "serve",
            "--port",
            str(port),
            "--no-worker",
            "--workers",
            str(WORKERS),
        ],
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        print(
            f"# bench energy: ingestion and collects ({WORKERS} uvicorn worker(s); the load "
            f"generator and pgbench run on the same {os.cpu_count()} cores)",
            flush=True,
        )
        asyncio.run(_bench(base, plain_dsn(url), tmp, Cpu(proc.pid)))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        asyncio.run(exec_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        shutil.rmtree(tmp, ignore_errors=True)
        for server in reversed(started):
            server.stop()


__all__ = ["main"]
