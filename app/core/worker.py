"""Background work: periodic jobs, each in its own session and transaction.

Jobs must be safe to run in several processes at once (API processes with an in-process worker
and ``canopy worker`` instances): they use set-based statements or ``FOR UPDATE SKIP LOCKED``.
The full list, across domains, is :func:`app.jobs.default_jobs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.core.idempotency import purge_expired

logger = logging.getLogger("canopy.worker")

JobFn = Callable[[AsyncSession, datetime], Awaitable[int]]


@dataclass(frozen=True)
class Job:
    name: str
    every: timedelta
    run: JobFn


async def purge_refresh_tokens(session: AsyncSession, now: datetime) -> int:
    """Spent or expired refresh tokens older than a day are no longer needed for reuse detection
    of recent logins; revoked logins lose theirs too."""
    result = await session.execute(
        text(
            "DELETE FROM refresh_tokens WHERE expires_at < :cutoff "
            "OR (used_at IS NOT NULL AND used_at < :cutoff - interval '30 days')"
        ),
        {"cutoff": now - timedelta(days=1)},
    )
    return int(getattr(result, "rowcount", 0) or 0)


def housekeeping_jobs() -> list[Job]:
    return [
        Job("purge_idempotency_keys", timedelta(minutes=10), purge_expired),
        Job("purge_refresh_tokens", timedelta(hours=1), purge_refresh_tokens),
    ]


class Worker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Clock,
        jobs: list[Job] | None = None,
        tick: float = 1.0,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.jobs = jobs if jobs is not None else housekeeping_jobs()
        self.tick = tick
        self._next: dict[str, datetime] = {}
        self._stop = asyncio.Event()

    async def run_job(self, job: Job) -> int:
        async with self.sessionmaker() as session, session.begin():
            return await job.run(session, self.clock.now())

    async def run_due(self) -> None:
        now = self.clock.now()
        for job in self.jobs:
            if self._stop.is_set():  # asked to stop: after the job in hand, not the whole round
                return
            if self._next.get(job.name, now) > now:
                continue
            self._next[job.name] = now + job.every
            try:
                done = await self.run_job(job)
                if done:
                    logger.info("job done", extra={"job": job.name, "count": done})
            except Exception:
                logger.exception("job failed", extra={"job": job.name})

    async def run_forever(self) -> None:
        logger.info("worker started", extra={"jobs": [j.name for j in self.jobs]})
        while not self._stop.is_set():
            await self.run_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.tick)
        logger.info("worker stopped")

    def stop(self) -> None:
        """Stop between jobs: the job running now finishes (its transaction commits or rolls
        back as a whole), no other starts."""
        self._stop.set()
