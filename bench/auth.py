"""The authenticated read path: ``GET /v1/me`` through real HTTP (uvicorn, JWT check, one SQL
query for user + live login) versus asyncpg running that same query directly.

Servers: ``CANOPY_BENCH_DATABASE_URL`` / ``CANOPY_BENCH_REDIS_URL`` (or the embedded ones under
``.canopy-bench``). A fresh database is created and dropped. Prints both sides and the ratio.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from app.config import normalize_database_url
from app.core.embedded import ensure_postgres, ensure_redis
from bench.common import exec_sql, plain_dsn

DURATION = float(os.environ.get("BENCH_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
QUERY = (
    "SELECT u.* FROM users u JOIN auth_sessions s ON s.user_id = u.id "
    "WHERE u.id = $1 AND u.erased_at IS NULL AND s.id = $2 AND s.revoked_at IS NULL"
)


async def _load(call: object, seconds: float, concurrency: int) -> tuple[int, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def one() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await call()  # type: ignore[operator]
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(one() for _ in range(concurrency)))
    return len(latencies), latencies


def _report(name: str, count: int, latencies: list[float], seconds: float) -> float:
    rate = count / seconds
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{name:<28} {rate:>9.0f} req/s   p50 {q[49] * 1000:6.2f} ms   p99 {q[98] * 1000:6.2f} ms"
    )
    return rate


async def _bench(base: str, db_url: str) -> None:
    async with httpx.AsyncClient(
        base_url=base, limits=httpx.Limits(max_connections=CONCURRENCY)
    ) as c:
        reg = await c.post(
            "/v1/auth/register", json={"handle": "bench", "password": "benchmark-pw"}
        )
        reg.raise_for_status()
        body = reg.json()
        headers = {"Authorization": f"Bearer {body['access_token']}"}

        async def http_call() -> None:
            r = await c.get("/v1/me", headers=headers)
            assert r.status_code == 200

        await _load(http_call, 1, CONCURRENCY)  # warm-up
        n, lat = await _load(http_call, DURATION, CONCURRENCY)
        api = _report("GET /v1/me over HTTP", n, lat, DURATION)

    pool = await asyncpg.create_pool(plain_dsn(db_url), min_size=CONCURRENCY, max_size=CONCURRENCY)
    conn = await pool.acquire()
    sid = await conn.fetchval("SELECT id FROM auth_sessions LIMIT 1")
    await pool.release(conn)
    uid = uuid.UUID(body["user"]["id"])

    async def sql_call() -> None:
        async with pool.acquire() as cx:
            await cx.fetchrow(QUERY, uid, sid)

    n, lat = await _load(sql_call, DURATION, CONCURRENCY)
    raw = _report("same SQL via asyncpg", n, lat, DURATION)
    await pool.close()
    print(
        f"ratio API / raw SQL: {api / raw:.1%}  (concurrency {CONCURRENCY}, {DURATION:.0f} s each)"
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
    env = {
        **os.environ,
        "CANOPY_DATABASE_URL": url,
        "CANOPY_REDIS_URL": redis,
        "CANOPY_LOG_LEVEL": "WARNING",
        "CANOPY_DATA_DIR": str(root / ".canopy-bench"),
    }
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "canopy"), "serve", "--port", str(port), "--no-worker"],
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
        print("# bench auth: authenticated read path")
        asyncio.run(_bench(base, url))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        asyncio.run(exec_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        for server in reversed(started):
            server.stop()
