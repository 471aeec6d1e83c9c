"""Redis-backed rate limits (``limits`` library, moving window), tuned in the rules' ``[limits]``.

A limit is named after its rules key (``register``, ``login``, ``collect``, ...). When Redis is
unreachable each process falls back to counting in its own memory (per process, so a little more
lenient, but never unlimited — sign-in protection must not vanish with Redis), and logs it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisClusterStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import Counter
from redis.asyncio import RedisCluster

from app.core.errors import RateLimited
from app.core.redis import AnyRedis

logger = logging.getLogger("canopy.ratelimit")

RATE_LIMITED = Counter("canopy_rate_limited_total", "Requests refused by a rate limit", ["limit"])
LIMITER_ERRORS = Counter("canopy_rate_limiter_errors_total", "Rate-limit checks skipped (Redis)")


@lru_cache(maxsize=64)
def _parse(spec: str) -> RateLimitItem:
    return parse(spec)


class RateLimiter:
    """Checks named limits. ``spec_for(name)`` returns the current "N/period" for a name, so a
    newly published rules version takes effect without a restart."""

    def __init__(self, redis: AnyRedis, spec_for: Callable[[str], str]) -> None:
        self._storage: RedisStorage | RedisClusterStorage
        if isinstance(redis, RedisCluster):
            # limits opens its own cluster client from the same startup nodes and credentials
            # (it cannot share ours); a moving window is one key, so any slot will do
            nodes = ",".join(f"{n.host}:{n.port}" for n in redis.startup_nodes)
            options = {
                k: v
                for k, v in redis.connection_kwargs.items()
                if k in ("username", "password", "ssl", "socket_timeout", "socket_connect_timeout")
                and v is not None
            }
            self._storage = RedisClusterStorage(
                f"async+redis+cluster://{nodes}",
                implementation="redispy",
                key_prefix="canopy:rl",
                **options,
            )
        else:
            # share the app's connection pool rather than opening a second one
            pool: Any = redis.connection_pool
            self._storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                connection_pool=pool,
                key_prefix="canopy:rl",
            )
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._fallback = MovingWindowRateLimiter(MemoryStorage())
        self._spec_for = spec_for

    async def hit(self, name: str, *key: str) -> None:
        """Count one request against limit ``name`` for ``key``; raise 429 when over."""
        item = _parse(self._spec_for(name))
        try:
            if await self._limiter.hit(item, name, *key):
                return
            stats = await self._limiter.get_window_stats(item, name, *key)
        except Exception:  # Redis down or slow: count in this process instead, visibly
            LIMITER_ERRORS.inc()
            logger.warning("rate limit counted in memory: redis unavailable", extra={"limit": name})
            if await self._fallback.hit(item, name, *key):
                return
            stats = await self._fallback.get_window_stats(item, name, *key)
        RATE_LIMITED.labels(name).inc()
        raise RateLimited(retry_after=math.ceil(stats.reset_time - time.time()))

    async def reset(self) -> None:
        await self._storage.reset()

    async def close(self) -> None:
        """Close the cluster client ``limits`` opened (a standalone limiter uses the app's pool,
        which the app closes)."""
        if isinstance(self._storage, RedisClusterStorage):
            bridge: Any = self._storage.bridge  # the redis-py bridge holds the client it made
            await bridge.get_connection().aclose()


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def limit_by_address(name: str) -> Callable[[Request], Awaitable[None]]:
    """A dependency applying limit ``name`` per client address."""

    async def dependency(request: Request) -> None:
        limiter: RateLimiter = request.app.state.rate_limiter
        await limiter.hit(name, client_address(request))

    return dependency
