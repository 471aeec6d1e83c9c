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
    """The first instant ≥ ``after`` whose local wall clock in ``tz`` reads ``at``.

    Compared in UTC: datetimes sharing a tzinfo compare by wall clock alone, which is wrong in
    the hour a DST change repeats. A wall time that happens twice that night is tried at both
    instants (``fold`` 0 then 1); one skipped by a DST jump resolves to the instant just after
    the jump (``fold=0``, the offset in force before it)."""
    local_zone = zone(tz)
    after_utc = after.astimezone(UTC)
    day = after_utc.astimezone(local_zone).date()
    for candidate_day in (day, day + timedelta(days=1)):
        for fold in (0, 1):
            candidate = datetime.combine(candidate_day, at, tzinfo=local_zone).replace(fold=fold)
            if candidate.astimezone(UTC) >= after_utc:
                return candidate.astimezone(UTC)
    raise AssertionError("unreachable: the next day is always later")  # pragma: no cover


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
