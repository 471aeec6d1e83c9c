"""Hot publishing: every process picks up newly published rules within seconds, no restart.

A publish announces itself on a Redis channel; each process reloads the versions from PostgreSQL
when told, and also checks every ``interval`` seconds in case a message was missed (Redis down,
a process busy reconnecting). The registry is updated in place, so everything holding it — the
request handlers, the rate limiter, the worker's jobs — sees the new versions at once; a version
with a future ``effective_from`` then takes over at that instant by itself.

On a Redis Cluster a ``PUBLISH`` reaches the subscribers of every node (the cluster bus forwards
it), so the listener subscribes on whichever node redis-py picks for the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import RedisCluster
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.redis import AnyRedis
from app.rules.registry import RulesRegistry, load_registry

logger = logging.getLogger("canopy.rules")

CHANNEL = "canopy:rules:published"
# seconds between attempts to resubscribe after Redis went away
_FIRST_RETRY, _MAX_RETRY = 0.25, 5.0


async def announce(redis: AnyRedis, version: int) -> None:
    """Tell every process a version was published (best effort: the poll is the backstop)."""
    try:
        await redis.publish(CHANNEL, str(version))
    except Exception:
        logger.warning("could not announce rules version %s; processes will poll", version)


class RulesWatcher:
    def __init__(
        self,
        registry: RulesRegistry,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: AnyRedis,
        interval: float = 10.0,
    ) -> None:
        self.registry = registry
        self.sessionmaker = sessionmaker
        self.redis = redis
        self.interval = interval
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def _fingerprint(self, registry: RulesRegistry) -> list[tuple[int, object]]:
        return [(v.version, v.effective_from) for v in registry.versions]

    async def reload(self) -> bool:
        """Load the versions from PostgreSQL; True when something changed."""
        async with self.sessionmaker() as session:
            fresh = await load_registry(session)
        if self._fingerprint(fresh) == self._fingerprint(self.registry):
            return False
        self.registry.replace(fresh.versions)
        logger.info(
            "rules versions reloaded",
            extra={"versions": [v.version for v in fresh.versions]},
        )
        return True

    async def _changed_in_db(self) -> bool:
        async with self.sessionmaker() as session:
            row = (
                await session.execute(text("SELECT count(*), max(version) FROM rules_versions"))
            ).one()
        known = self.registry.versions
        return (row[0], row[1]) != (len(known), max((v.version for v in known), default=None))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                if await self._changed_in_db():
                    await self.reload()
            except Exception:
                logger.warning("rules poll failed", exc_info=True)

    async def _listen(self) -> None:
        backoff = _FIRST_RETRY
        while not self._stopping:
            pubsub = self.redis.pubsub()
            try:
                if isinstance(self.redis, RedisCluster):
                    # a cluster pubsub picks its node from the slot map, empty until the first
                    # command: load it (a no-op once loaded)
                    await self.redis.initialize()
                await pubsub.subscribe(CHANNEL)
                if backoff > _FIRST_RETRY:
                    logger.info("rules channel back")
                    # a message published while Redis was away is lost: look for it
                    await self.reload()
                backoff = _FIRST_RETRY
                # get_message with a timeout rather than listen(): redis-py can swallow a
                # cancellation inside listen(), which would hold up shutdown
                while not self._stopping:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:  # redis-py may turn our cancellation into a ConnectionError
                    return
                if backoff == _FIRST_RETRY:
                    logger.warning("rules channel lost (%s); retrying", exc)
                # quickly at first, then at most every few seconds while Redis stays away
                await asyncio.sleep(min(backoff, self.interval))
                backoff = min(backoff * 2, _MAX_RETRY)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    @property
    def enabled(self) -> bool:
        """``CANOPY_RULES_REFRESH_SECONDS=0`` turns the watcher off (listener and poll alike)."""
        return self.interval > 0

    def start(self) -> None:
        """Listen and poll in the background; does nothing when the watcher is turned off (an
        interval of 0 would otherwise make the poll a tight loop on PostgreSQL)."""
        if not self.enabled:
            logger.info("rules watcher off (CANOPY_RULES_REFRESH_SECONDS=0)")
            return
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._listen(), name="rules-listen"),
            asyncio.create_task(self._poll(), name="rules-poll"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # redis-py can swallow a cancellation that lands while it is still connecting the
            # subscriber; don't let that hold the whole shutdown
            done, pending = await asyncio.wait(self._tasks, timeout=2)
            for task in pending:
                logger.warning("rules watcher task %s did not stop", task.get_name())
            for task in done:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    task.result()
        self._tasks = []
