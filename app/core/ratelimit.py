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
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import Counter
from redis.asyncio import Redis

from app.core.errors import RateLimited

logger = logging.getLogger("canopy.ratelimit")

RATE_LIMITED = Counter("canopy_rate_limited_total", "Requests refused by a rate limit", ["limit"])
LIMITER_ERRORS = Counter("canopy_rate_limiter_errors_total", "Rate-limit checks skipped (Redis)")


@lru_cache(maxsize=64)
def _parse(spec: str) -> RateLimitItem:
    return parse(spec)


class RateLimiter:
    """Checks named limits. ``spec_for(name)`` returns the current "N/period" for a name, so a
    newly published rules version takes effect without a restart."""

    def __init__(self, redis: Redis, spec_for: Callable[[str], str]) -> None:
        # share the app's connection pool rather than opening a second one
        pool: Any = redis.connection_pool
        self._storage = RedisStorage(
            "async+redis://", implementation="redispy", connection_pool=pool, key_prefix="canopy:rl"
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


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def limit_by_address(name: str) -> Callable[[Request], Awaitable[None]]:
    """A dependency applying limit ``name`` per client address."""

    async def dependency(request: Request) -> None:
        limiter: RateLimiter = request.app.state.rate_limiter
        await limiter.hit(name, client_address(request))

    return dependency
