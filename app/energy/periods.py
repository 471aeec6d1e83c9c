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


# --- the same rules in SQL ---------------------------------------------------------------------
# A hot statement learns a user's zone from the users row it reads, so local days and ripening
# times are computed in the statement. These twins follow the Python functions above exactly,
# DST included (tests/energy/test_periods_sql.py compares them instant by instant). Arguments
# are SQL expressions: constants of the calling module, never user input.


def local_date_sql(moment: str, tz: str) -> str:
    """:func:`local_date` in SQL: the date an instant (timestamptz) falls on in zone ``tz``."""
    return f"(({moment}) AT TIME ZONE {tz})::date"


def _offset_sql(instant: str, tz: str) -> str:
    """The UTC offset in force in ``tz`` at an instant, as an interval."""
    return f"((({instant}) AT TIME ZONE {tz}) - (({instant}) AT TIME ZONE 'UTC'))"


def _folds_sql(wall: str, tz: str) -> str:
    """FROM items giving, for the local wall time ``wall`` (timestamp), the instants zoneinfo
    gives it with ``fold=0`` (``f0``) and, when it is a real second reading, ``fold=1`` (``f1``,
    else NULL). A wall time maps to ``wall - offset`` for the offset in force just before or just
    after the nearest change (one day either side is further than any change's reach); a reading
    that maps back to itself exists. In a gap neither does, and fold 0 takes the offset before
    the change (so 02:30 on a spring-forward night is 03:30 after the jump, as in zoneinfo)."""
    before = _offset_sql("u_.utc - interval '1 day'", tz)
    after = _offset_sql("u_.utc + interval '1 day'", tz)
    return (
        f"(SELECT {wall} AS wall) AS w_ "
        "CROSS JOIN LATERAL (SELECT w_.wall AT TIME ZONE 'UTC' AS utc) AS u_ "
        f"CROSS JOIN LATERAL (SELECT u_.utc - {before} AS c0, u_.utc - {after} AS c1) AS c_ "
        f"CROSS JOIN LATERAL (SELECT (c_.c0 AT TIME ZONE {tz}) = w_.wall AS ok0, "
        f"(c_.c1 AT TIME ZONE {tz}) = w_.wall AS ok1) AS ok_ "
        "CROSS JOIN LATERAL (SELECT CASE WHEN ok_.ok0 OR NOT ok_.ok1 THEN c_.c0 ELSE c_.c1 END "
        "AS f0, CASE WHEN ok_.ok1 THEN c_.c1 END AS f1) AS folds_"
    )


def local_midnight_sql(day: str, tz: str) -> str:
    """:func:`local_midnight` in SQL: the instant local date ``day`` begins in ``tz``."""
    wall = f"CAST({day} AS date)::timestamp"
    return f"(SELECT folds_.f0 FROM {_folds_sql(wall, tz)})"  # noqa: S608 (constant parts)


def next_local_time_sql(after: str, at: str, tz: str) -> str:
    """:func:`next_local_time` in SQL: the first instant ≥ ``after`` whose wall clock in ``tz``
    reads ``at`` (a time), trying that day and the next, each reading in order."""
    wall = f"({local_date_sql(after, tz)} + days_.k + ({at}))"
    return (
        "(SELECT min(x_.c) FROM (VALUES (0), (1)) AS days_(k) "  # noqa: S608 (constant parts)
        f"CROSS JOIN LATERAL {_folds_sql(wall, tz)} "
        "CROSS JOIN LATERAL (VALUES (folds_.f0), (folds_.f1)) AS x_(c) "
        f"WHERE x_.c >= ({after}))"
    )
