"""The process-level paths, with real processes: `canopy serve --workers 2` (metrics counted
once across workers, the metrics token, graceful stop), `canopy worker` (jobs run, no busy
loop with the rules watcher off, clean stop) and `canopy migrate`."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from tests.conftest import TestServers, _plain_dsn, drop_database, fresh_database
from tests.helpers import PASSWORD
from tests.processes import CANOPY, clean_env, free_port, stop, wait_for

pytestmark = pytest.mark.slow

METRICS_TOKEN = "metrics-token-0123456789-0123456789-abcdef"
SECRETS = {
    "CANOPY_ADMIN_TOKEN": "acceptance-admin-token-0123456789-abcdef",
    "CANOPY_JWT_SECRET": "acceptance-jwt-secret-0123456789-0123456789",
    "CANOPY_ENCRYPTION_KEY": "acceptance-encryption-key-0123456789-012345",
    "CANOPY_ARGON2_TIME_COST": "1",
    "CANOPY_ARGON2_MEMORY_KIB": "1024",
    "CANOPY_LOG_FORMAT": "text",
}


@pytest.fixture
def database(test_servers: TestServers) -> Iterator[str]:
    url = fresh_database(test_servers, "canopy_proc")
    yield url
    drop_database(test_servers, url)


def env_for(
    database: str, test_servers: TestServers, tmp_path: Path, **extra: str
) -> dict[str, str]:
    return clean_env(
        CANOPY_DATABASE_URL=database,
        CANOPY_REDIS_URL=test_servers.redis_url,
        CANOPY_DATA_DIR=str(tmp_path / "data"),
        **SECRETS,
        **extra,
    )


def start_serve(env: dict[str, str], port: int, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [CANOPY, "serve", "--port", str(port), "--workers", "2", "--no-worker", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        return proc.poll() is not None or httpx.get(base + "/readyz", timeout=1).status_code == 200

    try:
        wait_for(ready, 90, "canopy serve --workers 2 ready")
    finally:
        if proc.poll() is not None:
            raise AssertionError(f"canopy serve exited early:\n{stop(proc)}")
    return proc


def health_check(port: int) -> int:
    """What the Dockerfile's HEALTHCHECK runs, as it runs it."""
    return subprocess.run(
        [sys.executable, "-m", "app.core.healthcheck"],
        env=clean_env(CANOPY_PORT=str(port)),
        timeout=10,
    ).returncode


def counted(text: str, route: str) -> float:
    pattern = re.compile(
        r'^canopy_http_requests_total\{method="GET",route="'
        + re.escape(route)
        + r'",status="200"\} (\S+)$',
        re.M,
    )
    return sum(float(m) for m in pattern.findall(text))


class TestServeWithTwoWorkers:
    def test_metrics_count_every_request_once_and_stop_is_graceful(
        self, database: str, test_servers: TestServers, tmp_path: Path
    ) -> None:
        metrics_dir = tmp_path / "metrics"
        env = env_for(
            database,
            test_servers,
            tmp_path,
            CANOPY_METRICS_TOKEN=METRICS_TOKEN,
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        proc = start_serve(env, port)
        try:
            sent = 0
            with ThreadPoolExecutor(8) as pool:
                # until both workers have served requests (each keeps its own sample files)
                while len(list(metrics_dir.glob("counter_*.db"))) < 2 or sent < 200:
                    assert sent < 5000, "one worker served everything"
                    codes = list(
                        pool.map(lambda _: httpx.get(base + "/healthz").status_code, range(50))
                    )
                    assert codes == [200] * 50
                    sent += 50
            assert httpx.get(base + "/metrics").status_code == 401
            assert (
                httpx.get(base + "/metrics", headers={"Authorization": "Bearer nope"}).status_code
                == 401
            )
            scrapes = [httpx.get(base + "/metrics", headers=auth) for _ in range(6)]
            assert all(s.status_code == 200 for s in scrapes)
            # whichever worker answers the scrape, it reports every worker's requests, once
            assert {counted(s.text, "/healthz") for s in scrapes} == {float(sent)}
            # the container's health check finds the port it was given
            assert health_check(port) == 0

            # graceful stop: a request in flight when SIGTERM arrives still gets its answer
            body = b'{"handle": "late", "password": "%s"}' % PASSWORD.encode()
            with socket.create_connection(("127.0.0.1", port)) as conn:
                conn.sendall(
                    b"POST /v1/auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body) + body[:10]
                )
                time.sleep(0.3)
                proc.send_signal(15)
                time.sleep(0.5)
                conn.sendall(body[10:])
                conn.settimeout(20)
                answer = conn.recv(65536)
            assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
            out = stop(proc)
            assert proc.returncode == 0, out
            assert "PostgreSQL connections: 2 process(es)" in out
            with pytest.raises(httpx.ConnectError):
                httpx.get(base + "/healthz")
            assert health_check(port) == 1
        finally:
            if proc.poll() is None:
                stop(proc)

        # the same directory on the next start: the last run's samples are not counted again
        again = start_serve(env, port)
        try:
            text = httpx.get(base + "/metrics", headers=auth).text
            assert counted(text, "/healthz") == 0
        finally:
            stop(again)


async def _seed_expired_key(url: str) -> None:
    conn = await asyncpg.connect(_plain_dsn(url))
    try:
        past = datetime.now(UTC) - timedelta(days=2)
        await conn.execute(
            "INSERT INTO idempotency_keys (owner, key, fingerprint, created_at, expires_at) "
            "VALUES ('test', 'old', 'x', $1, $1)",
            past,
        )
    finally:
        await conn.close()


async def _keys_left(url: str) -> int:
    conn = await asyncpg.connect(_plain_dsn(url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM idempotency_keys"))
    finally:
        await conn.close()


class TestWorkerProcess:
    def test_runs_jobs_idles_quietly_and_stops_on_sigterm(
        self, database: str, test_servers: TestServers, tmp_path: Path
    ) -> None:
        env = env_for(database, test_servers, tmp_path, CANOPY_RULES_REFRESH_SECONDS="0")
        migrated = subprocess.run(
            [CANOPY, "migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        assert migrated.returncode == 0, migrated.stderr
        asyncio.run(_seed_expired_key(database))
        proc = subprocess.Popen(
            [CANOPY, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            wait_for(
                lambda: asyncio.run(_keys_left(database)) == 0,
                30,
                "the worker purged the expired key",
            )
            # idle with the rules watcher off: sleeping, not polling PostgreSQL in a loop
            process = psutil.Process(proc.pid)
            before = sum(process.cpu_times()[:2])
            time.sleep(2)
            busy = sum(process.cpu_times()[:2]) - before
            assert busy < 0.5, f"{busy:.2f} s of CPU in 2 s idle"
        finally:
            out = stop(proc, timeout=15)
        assert proc.returncode == 0, out
        assert "worker stopped" in out


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(_plain_dsn(url))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {r["tablename"] for r in rows}


class TestMigrateCommand:
    def test_migrate_down_and_up_again(
        self, database: str, test_servers: TestServers, tmp_path: Path
    ) -> None:
        env = env_for(database, test_servers, tmp_path)

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [CANOPY, "migrate", *args], env=env, capture_output=True, text=True, timeout=120
            )

        up = run()
        assert up.returncode == 0 and "database at head" in up.stdout, up.stderr
        assert {"users", "rules_versions", "ledger_entries"} <= asyncio.run(_tables(database))
        down = run("base", "--down")
        assert down.returncode == 0 and "database at base" in down.stdout, down.stderr
        assert asyncio.run(_tables(database)) == {"alembic_version"}
        assert run().returncode == 0
        assert "partners" in asyncio.run(_tables(database))
