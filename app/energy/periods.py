"""Local days and months in a user's own time zone, and when a ball ripens and expires."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_date(moment: datetime, tz: str) -> date:
    return moment.astimezone(zone(tz)).date()


def month_start(day: date) -> date:
    return day.replace(day=1)


def local_midnight(day: date, tz: str) -> datetime:
    """The UTC instant a local date begins (DST-safe: wall time resolved by zoneinfo)."""
    return datetime.combine(day, time(0), tzinfo=zone(tz)).astimezone(UTC)


def next_local_time(after: datetime, at: time, tz: str) -> datetime:
    """The first instant ≥ ``after`` whose local wall clock in ``tz`` reads ``at``."""
    local = after.astimezone(zone(tz))
    candidate = datetime.combine(local.date(), at, tzinfo=zone(tz))
    if candidate < local:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone(tz))
    return candidate.astimezone(UTC)


def ball_times(
    occurred_at: datetime,
    minted_at: datetime,
    *,
    ripen_after: timedelta,
    ripen_at_local: time | None,
    expire_after: timedelta,
    tz: str,
) -> tuple[datetime, datetime]:
    """(ripens_at, expires_at): ``occurred_at + ripen_after``, moved on to the next
    ``ripen_at_local`` when the kind has one; expiry ``expire_after`` after ripening — but a
    late event's ball is never born expired: it stays collectible ``expire_after`` from minting."""
    ripens_at = occurred_at + ripen_after
    if ripen_at_local is not None:
        ripens_at = next_local_time(ripens_at, ripen_at_local, tz)
    expires_at = max(ripens_at, minted_at) + expire_after
    return ripens_at.astimezone(UTC), expires_at.astimezone(UTC)
