"""Friends leaderboards on Redis sorted sets, with PostgreSQL as the truth.

Scores are absolute values returned by the collect statement itself (:mod:`.scores`) and written
with ``ZADD GT`` (never ZINCRBY) by the process's :class:`~.flusher.ScoreFlusher` a few
milliseconds later: a period's score only grows, so replayed, reordered or racing writes can
neither inflate nor roll back a score. Each period key has a ``ready`` marker; when Redis lost it
(a restart without persistence, a flush), the first reader rebuilds the whole period from the
ledger before answering. When Redis is down, or scores could not be written to it, answers come
straight from PostgreSQL.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.redis import AnyRedis
from app.energy.periods import zone

if TYPE_CHECKING:
    from app.game.leaderboards.flusher import ScoreFlusher

logger = logging.getLogger("canopy.leaderboards")

Period = Literal["day", "week", "total"]
PERIODS: tuple[Period, ...] = ("day", "week", "total")
TTL = {"day": timedelta(days=3), "week": timedelta(days=15)}
# A board is rebuilt from PostgreSQL at least this often, which bounds how long a score missed
# while Redis was unreachable (and not retried by this process) can stay out of date.
READY_FOR = timedelta(minutes=15)


def period_bounds(period: Period, now: datetime, tz: str) -> tuple[str, datetime | None]:
    """(bucket name, start instant) of the period containing ``now`` in the board's time zone."""
    local = now.astimezone(zone(tz))
    if period == "day":
        start = datetime.combine(local.date(), time(0), tzinfo=zone(tz))
        return local.date().isoformat(), start
    if period == "week":
        monday = local.date() - timedelta(days=local.weekday())
        year, week, _ = monday.isocalendar()
        return f"{year}-W{week:02d}", datetime.combine(monday, time(0), tzinfo=zone(tz))
    return "all", None


def board_key(period: Period, bucket: str) -> str:
    """``canopy:lb:{day:2026-11-30}``: the braces are a Redis Cluster hash tag, so a board and its
    ``ready`` marker (:func:`ready_key`), written in one transaction, live in one slot; different
    boards spread over the cluster."""
    return f"canopy:lb:{{{period}:{bucket}}}"


def ready_key(key: str) -> str:
    return f"{key}:ready"


def board_period(key: str) -> str:
    """The period of a :func:`board_key` (``day``, ``week`` or ``total``)."""
    return key.partition("{")[2].partition(":")[0]


async def values_from_db(
    session: AsyncSession,
    period: Period,
    start: datetime | None,
    user_ids: Iterable[uuid.UUID] | None,
) -> dict[uuid.UUID, int]:
    """Energy collected (own collects + takes from friends) per user in the period; for given
    users, or everyone with any when ``user_ids`` is None."""
    ids = list(user_ids) if user_ids is not None else None
    if period == "total":
        rows = await session.execute(
            text(
                "SELECT id, collected_total_g FROM users WHERE collected_total_g > 0 "
                "AND (CAST(:ids AS uuid[]) IS NULL OR id = ANY(CAST(:ids AS uuid[])))"
            ),
            {"ids": ids},
        )
    else:
        rows = await session.execute(
            text(
                "SELECT user_id, sum(amount_g) FROM ledger_entries "
                "WHERE account = 'user' AND reason IN ('collect', 'steal') AND at >= :start "
                "AND (CAST(:ids AS uuid[]) IS NULL OR user_id = ANY(CAST(:ids AS uuid[]))) "
                "GROUP BY user_id"
            ),
            {"ids": ids, "start": start},
        )
    return {r[0]: int(r[1]) for r in rows}


async def _ensure_built(
    session: AsyncSession, redis: AnyRedis, period: Period, bucket: str, start: datetime | None
) -> str:
    key = board_key(period, bucket)
    marker = ready_key(key)
    if await redis.exists(marker):
        return key
    values = await values_from_db(session, period, start, None)
    pipe = redis.pipeline(transaction=True)
    # GT: a period's score only grows, so an older value racing a newer one never wins
    items = [(str(u), v) for u, v in values.items()]
    for i in range(0, len(items), 1000):
        pipe.zadd(key, dict(items[i : i + 1000]), gt=True)
    pipe.set(marker, "1", ex=READY_FOR)
    if period in TTL:
        pipe.expire(key, TTL[period])
    await pipe.execute()
    logger.info("leaderboard rebuilt from PostgreSQL", extra={"key": key, "users": len(items)})
    return key


async def scores(
    session: AsyncSession,
    redis: AnyRedis,
    period: Period,
    user_ids: list[uuid.UUID],
    now: datetime,
    tz: str,
    flusher: ScoreFlusher,
) -> dict[uuid.UUID, int]:
    """Scores of these users in the period containing ``now`` (scores handed to the flusher
    are written first, so a collect is on the board as soon as its response is)."""
    bucket, start = period_bounds(period, now, tz)
    try:
        if not await flusher.flush():
            raise ConnectionError("pending scores could not be written")
        key = await _ensure_built(session, redis, period, bucket, start)
        found = await redis.zmscore(key, [str(u) for u in user_ids]) if user_ids else []
        return {u: int(v or 0) for u, v in zip(user_ids, found, strict=True)}
    except Exception:
        logger.warning("leaderboard read from PostgreSQL: redis unavailable", exc_info=True)
        values = await values_from_db(session, period, start, user_ids)
        return {u: values.get(u, 0) for u in user_ids}


async def forget_on_boards(redis: AnyRedis, user_id: uuid.UUID) -> None:
    """Drop an erased user from every board (best effort: boards only show friends anyway). On
    a cluster, ``scan_iter`` walks every primary."""
    try:
        async for key in redis.scan_iter(match="canopy:lb:*", count=500):
            if not key.endswith(b":ready"):
                await redis.zrem(key, str(user_id))
    except Exception:
        logger.warning("could not remove an erased user from the boards", exc_info=True)
