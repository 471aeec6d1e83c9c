"""Writing collectors' scores to the Redis boards without costing their requests a round trip.

A collect statement returns the collector's absolute scores (day, week, total); the handler hands
them to the process's :class:`ScoreFlusher` (no I/O) and answers. A few milliseconds later the
flusher writes every score handed to it since its last write in ONE pipeline (``ZADD GT`` per
board, so a score only grows and a late or repeated write cannot roll one back). That write runs
in its own task, outside any request, so it is in no request's round-trip budget. On a Redis
Cluster the pipeline is split by node (one round trip per node holding a board).

When Redis cannot be reached the scores stay pending (the highest per user and board) and are
written by the next flush: the next collect's, or the next board read's — readers call
:meth:`ScoreFlusher.flush` first, so a board read right after a collect sees it. Boards are still
rebuilt from PostgreSQL when Redis lost them (:mod:`app.game.leaderboards.service`).

Tests that look at Redis directly after a collect ``await app.state.leaderboard_flusher.flush()``;
tests that read boards through the API need nothing (reads flush first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import State

from app.core.redis import AnyRedis
from app.game.leaderboards.scores import Periods
from app.game.leaderboards.service import TTL, board_key, board_period

logger = logging.getLogger("canopy.leaderboards")

# after a failed write, wait this long before the next timed retry (reads still retry at once)
BACKOFF = 1.0
# scores kept while Redis is away; past this the oldest boards' are dropped (the boards are
# rebuilt from PostgreSQL every READY_FOR anyway)
MAX_PENDING = 200_000


class ScoreFlusher:
    """Per-process, coalescing writer of absolute scores to the boards (``app.state``)."""

    def __init__(self, state: State, *, delay: float = 0.005) -> None:
        self._state = state  # Redis is looked up at write time (it can be swapped, e.g. tests)
        self.delay = delay
        self._pending: dict[str, dict[str, int]] = {}
        self._count = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None  # the scheduled write, if any
        self._running: set[asyncio.Task[None]] = set()  # keeps started writes referenced
        self._failed = False

    @property
    def pending(self) -> int:
        """How many (board, user) scores wait to be written."""
        return self._count

    def add(
        self, user_id: uuid.UUID, periods: Periods, day_g: int, week_g: int, total_g: int
    ) -> None:
        """Queue a collector's scores (absolute values) and make sure a write is scheduled."""
        member = str(user_id)
        for key, score in (
            (board_key("day", periods.day), day_g),
            (board_key("week", periods.week), week_g),
            (board_key("total", "all"), total_g),
        ):
            self._merge(key, member, score)
        self._schedule(BACKOFF if self._failed else self.delay)

    def _merge(self, key: str, member: str, score: int) -> None:
        board = self._pending.setdefault(key, {})
        if member not in board:
            self._count += 1
        board[member] = max(score, board.get(member, score))
        while self._count > MAX_PENDING and len(self._pending) > 1:
            dropped = self._pending.pop(next(iter(self._pending)))
            self._count -= len(dropped)

    def _schedule(self, after: float) -> None:
        if self._timer is None:
            task = asyncio.create_task(self._flush_later(after), name="leaderboard-flush")
            self._timer = task
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _flush_later(self, after: float) -> None:
        await asyncio.sleep(after)
        self._timer = None  # scores added from now on schedule the next write
        if not await self.flush():
            self._schedule(BACKOFF)

    async def flush(self) -> bool:
        """Write every pending score in one pipeline; True when nothing is left pending. One
        flush at a time: a caller arriving during another's write waits for it, then writes
        whatever that one could not."""
        async with self._lock:
            if not self._pending:
                return True
            batch, self._pending, self._count = self._pending, {}, 0
            redis: AnyRedis = self._state.redis
            try:
                pipe = redis.pipeline(transaction=False)
                for key, scores in batch.items():
                    pipe.zadd(key, scores, gt=True)
                    period = board_period(key)
                    if period in TTL:
                        pipe.expire(key, TTL[period])
                await pipe.execute()
            except Exception:  # Redis is an accelerator: keep the scores for the next flush
                for key, scores in batch.items():
                    for member, score in scores.items():
                        self._merge(key, member, score)
                self._failed = True
                logger.warning("leaderboard update deferred: redis unavailable", exc_info=True)
                return False
            self._failed = False
            return True

    async def close(self) -> None:
        """Stop the timer and write what is pending (at shutdown)."""
        for task in list(self._running):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._timer = None
        with contextlib.suppress(Exception):
            await self.flush()


async def get_flusher(request: Request) -> ScoreFlusher:
    flusher: ScoreFlusher = request.app.state.leaderboard_flusher
    return flusher


FlusherDep = Annotated[ScoreFlusher, Depends(get_flusher)]
