"""The FastAPI application: routers, middleware and the lifespan that owns the database engine,
the Redis client, the rules, the rate limiter and (optionally) the in-process worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from sqlalchemy import text

from app import console
from app.accounts.endpoints import auth_router, me_router
from app.accounts.revocations import Revocations
from app.admin.audit import router as audit_router
from app.campaigns.endpoints import admin_router as campaigns_admin_router
from app.campaigns.endpoints import router as campaigns_router
from app.config import Settings, get_settings
from app.core.clock import Clock, SystemClock
from app.core.db import create_engine, create_sessionmaker, plain_dsn
from app.core.edge import EdgeMiddleware
from app.core.errors import install_error_handlers
from app.core.observability import configure_logging
from app.core.openapi import operation_id, tag_by_audience
from app.core.ops import router as ops_router
from app.core.pools import plan_api
from app.core.ratelimit import RateLimiter
from app.core.redis import create_redis
from app.core.security import Keys, configure_password_hashing
from app.core.services import resolve_services
from app.core.sql import Pg
from app.core.worker import Worker
from app.energy.endpoints import admin_router as energy_admin_router
from app.energy.endpoints import partner_router as energy_partner_router
from app.energy.endpoints import router as energy_router
from app.game.feed.endpoints import router as feed_router
from app.game.forest.endpoints import router as forest_router
from app.game.friends.endpoints import router as friends_router
from app.game.leaderboards.endpoints import router as leaderboards_router
from app.game.leaderboards.flusher import ScoreFlusher
from app.game.props.endpoints import admin_router as props_admin_router
from app.game.props.endpoints import router as props_router
from app.game.rain.endpoints import router as rain_router
from app.game.revive.endpoints import router as revive_router
from app.jobs import default_jobs
from app.partners.endpoints import admin_router as partners_admin_router
from app.partners.endpoints import partner_router
from app.partners.keys import PartnerKeys
from app.planting.endpoints import admin_router as planting_admin_router
from app.planting.endpoints import partner_router as planting_partner_router
from app.planting.endpoints import router as planting_router
from app.planting.groves.endpoints import router as groves_router
from app.rewards.endpoints import admin_router as rewards_admin_router
from app.rewards.endpoints import partner_router as rewards_partner_router
from app.rewards.endpoints import router as rewards_router
from app.rules.endpoints import router as rules_admin_router
from app.rules.hot import RulesWatcher
from app.rules.loader import load_rules
from app.rules.registry import load_registry
from app.rules.service import log_file_sync, sync_rules_file

logger = logging.getLogger("canopy")


def warn_without_autovacuum(setting: str | None) -> bool:
    """Say so at start when PostgreSQL runs without autovacuum: the ledger, balls and users
    tables are updated all day, and without it their statistics go stale and their dead rows
    pile up until hot statements pick bad plans (see docs/operations.md). True if it warned."""
    if setting == "off":
        logger.warning(
            "PostgreSQL runs with autovacuum = off: hot paths slow down as tables grow unless "
            "VACUUM (ANALYZE) is run on a schedule (docs/operations.md, 'PostgreSQL settings')"
        )
        return True
    return False


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, run_worker: bool | None = None
) -> FastAPI:
    """Build the app. ``run_worker`` defaults to the ``CANOPY_IN_PROCESS_WORKER`` setting."""
    settings = settings or get_settings()
    clock = clock or SystemClock()
    configure_password_hashing(settings.argon2_time_cost, settings.argon2_memory_kib)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await asyncio.to_thread(resolve_services, settings)
        pools = plan_api(settings)
        engine = create_engine(services.database_url, settings, pools)
        redis = create_redis(services.redis_url)
        rules = load_rules(settings.rules)
        sessionmaker = create_sessionmaker(engine)
        dsn = plain_dsn(services.database_url)
        pg = await Pg.connect(dsn, min_size=1, max_size=pools.hot_pool_size)
        async with sessionmaker() as session, session.begin():
            log_file_sync(await sync_rules_file(session, rules, clock.now()))
            registry = await load_registry(session)
            warn_without_autovacuum(await session.scalar(text("SHOW autovacuum")))
        app.state.settings = settings
        app.state.clock = clock
        app.state.keys = Keys.from_settings(settings)
        app.state.engine = engine
        app.state.pg = pg
        revocations = Revocations(
            dsn, clock, settings.access_token_ttl, poll_seconds=settings.revocation_poll_seconds
        )
        await revocations.start()
        app.state.revocations = revocations
        partner_keys = PartnerKeys(dsn, pg, poll_seconds=settings.revocation_poll_seconds)
        await partner_keys.start()
        app.state.partner_keys = partner_keys
        app.state.sessionmaker = sessionmaker
        app.state.redis = redis
        app.state.rules_registry = registry
        app.state.leaderboard_flusher = ScoreFlusher(app.state)
        app.state.rate_limiter = RateLimiter(
            redis,
            lambda name: str(getattr(app.state.rules_registry.at(clock.now()).rules.limits, name)),
        )
        logger.info(
            "canopy ready: %s; rules %s (%s)",
            services.describe(),
            rules.rules.version,
            rules.sha256[:12],
        )
        watcher = RulesWatcher(
            registry, sessionmaker, redis, interval=settings.rules_refresh_seconds
        )
        app.state.rules_watcher = watcher
        if settings.rules_refresh_seconds > 0:
            watcher.start()
        worker_task: asyncio.Task[None] | None = None
        worker: Worker | None = None
        if run_worker if run_worker is not None else settings.in_process_worker:
            jobs = default_jobs(
                registry, settings.raw_retention, settings=settings, keys=app.state.keys
            )
            worker = Worker(sessionmaker, clock, jobs)
            worker_task = asyncio.create_task(worker.run_forever(), name="canopy-worker")
        try:
            yield
        finally:
            if worker is not None and worker_task is not None:
                worker.stop()
                await worker_task
            await watcher.stop()
            await app.state.leaderboard_flusher.close()
            await revocations.stop()
            await partner_keys.stop()
            await pg.close()
            await app.state.rate_limiter.close()
            await redis.aclose()
            await engine.dispose()
            await asyncio.to_thread(services.stop_embedded)

    app = FastAPI(
        title="Canopy",
        version="1.0",
        summary="Personal carbon accounts, Ant Forest style",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    install_error_handlers(app)
    for router in (
        ops_router,
        auth_router,
        me_router,
        energy_router,
        forest_router,
        energy_partner_router,
        energy_admin_router,
        friends_router,
        props_router,
        props_admin_router,
        feed_router,
        leaderboards_router,
        rules_admin_router,
        audit_router,
        partners_admin_router,
        partner_router,
        planting_router,
        planting_partner_router,
        planting_admin_router,
        revive_router,
        rain_router,
        groves_router,
        rewards_router,
        rewards_partner_router,
        rewards_admin_router,
        campaigns_router,
        campaigns_admin_router,
    ):
        app.include_router(router)
    console.install(app)
    tag_by_audience(app)
    app.add_middleware(EdgeMiddleware, max_bytes=settings.max_body_bytes)
    return app


def app_factory() -> FastAPI:
    """Entry for ``uvicorn --factory app.main:app_factory`` (what ``canopy serve`` runs)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
