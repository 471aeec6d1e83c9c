"""One benchmark run's world: scratch databases, the Canopy server, the reference database, the
load generator, timings, and the users shared between scenarios."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench import fixtures, load, reference

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Timing:
    warm: float  # seconds of closed-loop warm-up before each measured window
    measure: float  # seconds of each measured closed-loop window
    paced: float  # seconds of each paced (open-loop) pass
    storm_rounds: int  # S4 storms (each on a fresh owner) on each side
    pool: int  # registered users shared by S2, S3 and S5


FULL = Timing(warm=2, measure=10, paced=10, storm_rounds=3, pool=1000)
QUICK = Timing(warm=1, measure=3, paced=3, storm_rounds=2, pool=300)

# closed-loop connections per scenario (the limit runs at the same count unless said otherwise)
CONNECTIONS = {"S1": 64, "S1me": 64, "S2": 16, "S3": 32, "S5": 32, "FL": 16}
PGBENCH_CLIENTS = 16  # S3, S5, FL limits (as in the reference's own notes)
COPY_CONNECTIONS = 8  # S2's limit
STORM_FRIENDS = 256
STORM_CLIENTS = 32  # S4's pgbench: -c 32 -t 8 = 256 transactions
PACE = 0.8  # the paced pass runs at this share of the measured closed-loop maximum
DAY = timedelta(days=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plain(url: str) -> str:
    """A ``postgresql://`` URL (asyncpg, pgbench) for any SQLAlchemy-style PostgreSQL URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Proc:
    """A server subprocess (``canopy serve`` or the bare app), ready once ``ready_path`` is 200."""

    def __init__(self, cmd: list[str], env: dict[str, str], port: int, ready_path: str) -> None:
        self.port = port
        self.log = tempfile.NamedTemporaryFile(prefix="canopy-bench-server-", suffix=".log")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if httpx.get(self.base + ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready after 120 s:\n{self.tail()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@dataclass
class Context:
    timing: Timing
    workers: int
    wrk: str | None
    admin_url: str  # PostgreSQL URL of a database we may CREATE DATABASE from
    redis_url: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="canopy-bench-")))
    admin_token: str = field(default_factory=lambda: "bench-admin-" + uuid.uuid4().hex)
    jwt_secret: str = field(default_factory=lambda: "bench-jwt-" + uuid.uuid4().hex)
    # set by start()
    app_dsn: str = ""
    server: Proc | None = None
    api: fixtures.Api | None = None
    loader: load.Loader | None = None
    ref: reference.Reference | None = None
    rules: dict[str, Any] = field(default_factory=dict)
    _dbs: list[str] = field(default_factory=list)
    _pool: list[fixtures.User] = field(default_factory=list)
    _crowd: list[fixtures.User] = field(default_factory=list)
    bare_limit: dict[str, Any] | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    async def _admin_exec(self, sql: str) -> None:
        conn = await asyncpg.connect(plain(self.admin_url))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def _scratch(self, kind: str) -> str:
        name = f"canopy_bench_{kind}_{self.tag}"
        await self._admin_exec(f'CREATE DATABASE "{name}"')
        self._dbs.append(name)
        return name

    async def start(self) -> None:
        app_db = await self._scratch("app")
        ref_db = await self._scratch("ref")
        url = make_url(plain(self.admin_url))
        self.app_dsn = url.set(database=app_db).render_as_string(hide_password=False)
        ref_dsn = url.set(database=ref_db).render_as_string(hide_password=False)
        self.ref = reference.Reference(
            ref_dsn,
            url.host or str(url.query.get("host") or "127.0.0.1"),  # a socket dir, embedded
            url.port or 5432,
            url.username or "postgres",
            url.password,
            ref_db,
        )
        began = time.perf_counter()
        await asyncio.to_thread(self.ref.load)
        print(
            f"  reference tables loaded ({reference.USERS} users, {reference.BALLS} balls) in "
            f"{time.perf_counter() - began:.1f} s",
            flush=True,
        )
        self.rules = fixtures.rules_with_limits_lifted(
            ROOT / "rules" / "default.toml", self.tmp / "rules.toml"
        )
        env = {
            **os.environ,
            **fixtures.server_env(
                database_url=self.app_dsn,
                redis_url=self.redis_url,
                admin_token=self.admin_token,
                jwt_secret=self.jwt_secret,
                rules=self.tmp / "rules.toml",
                data=self.tmp / "data",
            ),
        }
        port = free_port()
        began = time.perf_counter()
        self.server = await asyncio.to_thread(
            Proc, fixtures.serve_command(port, self.workers), env, port, fixtures.READY_PATH
        )
        print(
            f"  canopy serve --workers {self.workers} --no-worker ready on :{port} (migrated) in "
            f"{time.perf_counter() - began:.1f} s",
            flush=True,
        )
        self.api = fixtures.Api(self.server.base, self.admin_token)
        self.loader = load.Loader(port, self.wrk, self.tmp)

    async def stop(self) -> None:
        if self.api:
            await self.api.close()
        if self.server:
            self.server.stop()
        if self.ref:
            self.ref.cleanup()
        for name in self._dbs:
            if os.environ.get("BENCH_KEEP_DATABASES"):  # for EXPLAIN-ing what a run left
                print(f"  kept database {name} (BENCH_KEEP_DATABASES)", flush=True)
                continue
            try:
                await self._admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except (OSError, asyncpg.PostgresError) as exc:
                print(f"  !! could not drop {name}: {exc}", flush=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- helpers for scenarios --------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def cpu(self) -> load.Cpu:
        assert self.server is not None
        return load.Cpu(self.server.pid)

    async def analyze(self) -> None:
        conn = await asyncpg.connect(self.app_dsn)
        try:
            await conn.execute("ANALYZE")
        finally:
            await conn.close()

    async def pool(self, n: int) -> list[fixtures.User]:
        """The first ``n`` users of the run's shared pool (registered through the API)."""
        assert self.api is not None
        if len(self._pool) < n:
            more = await self.api.register(n - len(self._pool), f"p{self.tag}_{len(self._pool)}_")
            self._pool += more
        return self._pool[:n]

    async def crowd(self) -> list[fixtures.User]:
        """``STORM_FRIENDS`` users, each with 3 ripe balls and one still growing: S4's collectors
        and FL's listed friends."""
        assert self.api is not None
        if not self._crowd:
            users = await self.api.register(STORM_FRIENDS, f"c{self.tag}_")
            now = datetime.now(UTC)
            events = [
                (u.id, fixtures.FREE_KIND, None, at)
                for u in users
                for at in (now - 2 * DAY, now - 2 * DAY, now - 2 * DAY, now - timedelta(hours=1))
            ]
            await self.api.mint(events)
            self._crowd = users
        return self._crowd

    async def ledger_ok(self) -> tuple[bool, dict[str, Any]]:
        assert self.api is not None
        body = await self.api.ledger_check()
        return bool(body.get("ok")), body
