"""The ``canopy`` command: serve, worker, migrate, rules, ..."""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import shutil
import signal
import tempfile
from typing import Annotated

import typer
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from app.config import get_settings
from app.core import migrate as migrations
from app.core.observability import configure_logging
from app.core.services import Services, resolve_services
from app.game.simulator.cli import simulate
from app.keys import keys_app
from app.rules.cli import rules_app

app = typer.Typer(help="Canopy: personal carbon accounts, Ant Forest style.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(keys_app, name="keys")
app.command("simulate")(simulate)

logger = logging.getLogger("canopy.cli")


def _services() -> Services:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        services = resolve_services(settings)
    except Exception as exc:
        typer.secho(f"canopy: cannot start: {exc}", err=True, fg="red")
        raise typer.Exit(1) from exc
    logger.info("using %s", services.describe())
    return services


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(envvar="CANOPY_HOST", help="address to listen on")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="CANOPY_PORT", help="port to listen on")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            envvar="CANOPY_WORKERS",
            help="uvicorn worker processes [default: one per core, while each keeps at least "
            "10 of CANOPY_DB_MAX_CONNECTIONS]",
        ),
    ] = None,
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="skip alembic upgrade")] = False,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="no background jobs in this process")
    ] = False,
    graceful_timeout: Annotated[
        int,
        typer.Option(
            envvar="CANOPY_GRACEFUL_TIMEOUT",
            help="on SIGTERM, seconds to let requests in flight finish",
        ),
    ] = 30,
) -> None:
    """Run the API (migrating first), on the configured or the embedded PostgreSQL and Redis."""
    from app.core.pools import BudgetTooSmall, default_workers, plan_api

    settings = get_settings()
    workers = workers or default_workers(settings, os.cpu_count() or 1)
    try:
        pools = plan_api(settings, workers)
    except BudgetTooSmall as exc:
        typer.secho(f"canopy: cannot start: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None
    if settings.database_url and settings.jwt_secret is None:
        logger.warning(
            "CANOPY_JWT_SECRET is unset: using the secret kept in %s; set it when running more "
            "than one host",
            settings.data_dir,
        )
    if settings.database_url and settings.encryption_key is None:
        logger.warning(
            "CANOPY_ENCRYPTION_KEY is unset: secrets at rest are encrypted with a key derived "
            "from the JWT secret, so losing that secret loses them; set CANOPY_ENCRYPTION_KEY "
            "and run canopy keys rotate (docs/operations.md)"
        )
    services = _services()
    (logger.warning if pools.over_budget else logger.info)(pools.describe())
    own_metrics_dir: str | None = None
    try:
        if not no_migrate:
            migrations.upgrade(services.database_url)
        # uvicorn's worker processes read these: they use the servers this process resolved
        os.environ["CANOPY_DATABASE_URL"] = services.database_url
        os.environ["CANOPY_REDIS_URL"] = services.redis_url
        os.environ["CANOPY_IN_PROCESS_WORKER"] = "false" if no_worker else "true"
        os.environ["CANOPY_PROCESSES"] = str(workers)
        get_settings.cache_clear()  # the app (in this process with one worker) reads them anew
        if workers > 1:
            own_metrics_dir = _prepare_metrics_dir()
        shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host  # noqa: S104
        typer.secho(
            f"Canopy on http://{shown}:{port}  (API docs: http://{shown}:{port}/docs, "
            f"console: http://{shown}:{port}/console)",
            fg="green",
            err=True,
        )
        _exit_cleanly_on_signals()
        config = uvicorn.Config(
            "app.main:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            proxy_headers=True,
            log_config=None,
            server_header=False,
            timeout_graceful_shutdown=graceful_timeout or None,
        )
        if workers > 1:
            _Supervisor(config, sockets=[config.bind_socket()]).run()
        else:
            server = uvicorn.Server(config)
            server.run()
            if not server.started:  # the port taken, the app failing to start: as uvicorn.run
                raise typer.Exit(STARTUP_FAILURE)
    finally:
        services.stop_embedded()
        if own_metrics_dir is not None:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)


class _Supervisor(Multiprocess):
    """uvicorn's supervisor of worker processes, closing the listening socket as soon as it is
    told to stop. uvicorn's own keeps it open until every worker has exited, so connections
    made during a graceful shutdown would be accepted by the kernel into a backlog nobody
    reads, then reset; closed at once, they are refused and the client (or load balancer)
    goes elsewhere while the workers finish the requests they have."""

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def _prepare_metrics_dir() -> str | None:
    """Prometheus multiprocess mode: each worker writes its samples to files in one directory
    and /metrics sums them, so every request is counted once whichever worker served it and
    whichever answers the scrape. The directory must start empty (files of an earlier run
    would be counted again): a given PROMETHEUS_MULTIPROC_DIR is emptied, else a fresh one is
    made (and returned, to be removed at exit)."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):
            os.remove(stale)
        return None
    path = tempfile.mkdtemp(prefix="canopy-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def _exit_cleanly_on_signals() -> None:
    """uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler
    that was installed before it. Make that handler raise SystemExit, so ``finally`` blocks run
    and the embedded PostgreSQL and Redis are stopped instead of outliving the service."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)


@app.command()
def worker() -> None:
    """Run background jobs only (no HTTP)."""
    from app.core.clock import SystemClock
    from app.core.db import create_engine, create_sessionmaker
    from app.core.pools import plan_worker
    from app.core.redis import create_redis
    from app.core.security import Keys
    from app.core.worker import Worker
    from app.jobs import default_jobs
    from app.rules.hot import RulesWatcher
    from app.rules.registry import load_registry

    settings = get_settings()
    services = _services()

    async def main() -> None:
        engine = create_engine(services.database_url, settings, plan_worker(settings))
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            registry = await load_registry(session)
        every = default_jobs(
            registry,
            settings.raw_retention,
            settings=settings,
            keys=Keys.from_settings(settings),
        )
        jobs = Worker(sessionmaker, SystemClock(), every)
        redis = create_redis(services.redis_url)
        watcher = RulesWatcher(registry, sessionmaker, redis, settings.rules_refresh_seconds)
        watcher.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, jobs.stop)
        try:
            await jobs.run_forever()
        finally:
            await watcher.stop()
            await redis.aclose()
            await engine.dispose()

    try:
        asyncio.run(main())
    finally:
        services.stop_embedded()


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    down: Annotated[bool, typer.Option("--down", help="downgrade to REVISION")] = False,
) -> None:
    """Migrate the database (``alembic upgrade head``; ``--down base`` to undo everything)."""
    services = _services()
    try:
        if down:
            migrations.downgrade(services.database_url, revision)
        else:
            migrations.upgrade(services.database_url, revision)
        typer.echo(f"database at {revision}")
    finally:
        services.stop_embedded()


users_app = typer.Typer(help="Operators' answers to people's data requests.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("export")
def export_user(
    handle: Annotated[str, typer.Argument(help="The user's handle.")],
    out: Annotated[
        str | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Everything held about a user, as the JSON document of GET /v1/me/export."""
    import orjson

    from app.accounts.privacy import export
    from app.admin import audit
    from app.core.clock import SystemClock
    from app.core.db import create_engine, create_sessionmaker
    from app.core.security import Keys
    from app.game.friends.repository import FriendsRepository

    settings = get_settings()
    services = _services()

    async def run() -> bytes | None:
        engine = create_engine(services.database_url, settings)
        keys = Keys.from_settings(settings)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                user_id = await FriendsRepository(session).user_by_handle(handle.strip().lower())
                if user_id is None:
                    return None
                now = SystemClock().now()
                document = await export(session, keys, user_id, now)
                await audit.record(
                    session,
                    action="user.exported",
                    target=f"user:{user_id}",
                    summary="personal data exported with canopy users export",
                    at=now,
                    actor="cli",
                )
                return orjson.dumps(document, option=orjson.OPT_INDENT_2)
        finally:
            await engine.dispose()

    try:
        data = asyncio.run(run())
    finally:
        services.stop_embedded()
    if data is None:
        typer.echo(f"no user with handle {handle!r}", err=True)
        raise typer.Exit(1)
    if out:
        with open(out, "wb") as fh:
            fh.write(data)
        typer.echo(f"wrote {len(data)} bytes to {out}", err=True)
    else:
        typer.echo(data.decode())


@app.command()
def demo(
    webhook_url: Annotated[
        str | None, typer.Option(help="the demo partner's webhook URL (used when it is created)")
    ] = None,
) -> None:
    """Seed a demo NGO partner and a catalog after Ant Forest's (safe to run again); prints the
    partner's API key and webhook secret once, when it is created."""
    from app.planting.demo import main as seed_demo

    seed_demo(webhook_url)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
