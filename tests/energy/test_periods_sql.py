"""The SQL twins of local days, local midnights and ripening times agree with the Python ones to
the second, across DST changes (repeated and skipped hours, half-hour shifts, far offsets)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta

import asyncpg
import pytest

from app.energy.periods import (
    local_date,
    local_date_sql,
    local_midnight,
    local_midnight_sql,
    next_local_time,
    next_local_time_sql,
)
from tests.conftest import TestServers, _plain_dsn

ZONES = [
    "America/New_York",  # 1 h changes at 02:00
    "Australia/Lord_Howe",  # 30 min changes at 02:00
    "America/Havana",  # changes at midnight: some local days begin at 01:00
    "Asia/Shanghai",  # no changes
    "Pacific/Kiritimati",  # UTC+14
    "Pacific/Pago_Pago",  # UTC-11
]
# around each zone's 2026 changes, every 15 minutes for two days
CHANGES = {
    "America/New_York": [datetime(2026, 3, 7, tzinfo=UTC), datetime(2026, 10, 31, tzinfo=UTC)],
    "Australia/Lord_Howe": [datetime(2026, 4, 4, tzinfo=UTC), datetime(2026, 10, 3, tzinfo=UTC)],
    "America/Havana": [datetime(2026, 3, 7, tzinfo=UTC), datetime(2026, 10, 31, tzinfo=UTC)],
    "Asia/Shanghai": [datetime(2026, 11, 28, tzinfo=UTC)],
    "Pacific/Kiritimati": [datetime(2026, 11, 28, tzinfo=UTC)],
    "Pacific/Pago_Pago": [datetime(2026, 11, 28, tzinfo=UTC)],
}
TIMES = [time(0, 0), time(0, 30), time(1, 0), time(1, 30), time(2, 0), time(2, 30), time(7, 0)]

NEXT = f"""
    SELECT {next_local_time_sql("i.after", "i.at", "i.tz")} AS found
    FROM unnest(CAST($1 AS timestamptz[]), CAST($2 AS time[]), CAST($3 AS text[]))
         WITH ORDINALITY AS i(after, at, tz, n)
    ORDER BY i.n
"""
MIDNIGHT = f"""
    SELECT {local_midnight_sql("i.day", "i.tz")} AS midnight, {local_date_sql("i.at", "i.tz")} AS day
    FROM unnest(CAST($1 AS date[]), CAST($2 AS timestamptz[]), CAST($3 AS text[]))
         WITH ORDINALITY AS i(day, at, tz, n)
    ORDER BY i.n
"""


@pytest.fixture
async def conn(test_servers: TestServers) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(
        _plain_dsn(test_servers.database_url), server_settings={"timezone": "UTC"}
    )
    try:
        yield connection
    finally:
        await connection.close()


def _instants(zone: str) -> list[datetime]:
    return [start + timedelta(minutes=15 * i) for start in CHANGES[zone] for i in range(4 * 24 * 2)]


class TestPeriodsInSql:
    @pytest.mark.parametrize("zone", ZONES)
    async def test_next_local_time_matches_python(
        self, conn: asyncpg.Connection, zone: str
    ) -> None:
        cases = [(after, at) for after in _instants(zone) for at in TIMES]
        rows = await conn.fetch(
            NEXT, [c[0] for c in cases], [c[1] for c in cases], [zone] * len(cases)
        )
        wrong = [
            (after, at, row["found"], next_local_time(after, at, zone))
            for (after, at), row in zip(cases, rows, strict=True)
            if row["found"] != next_local_time(after, at, zone)
        ]
        assert wrong == []

    @pytest.mark.parametrize("zone", ZONES)
    async def test_local_midnight_and_local_date_match_python(
        self, conn: asyncpg.Connection, zone: str
    ) -> None:
        instants = _instants(zone)
        days = [date(2026, 1, 1) + timedelta(days=i) for i in range(len(instants))]
        rows = await conn.fetch(MIDNIGHT, days, instants, [zone] * len(days))
        assert [r["midnight"] for r in rows] == [local_midnight(d, zone) for d in days]
        assert [r["day"] for r in rows] == [local_date(i, zone) for i in instants]
