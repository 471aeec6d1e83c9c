"""Helpers every benchmark shares: URLs, scratch databases, latency summaries."""

from __future__ import annotations

import math
import statistics

import asyncpg
from sqlalchemy.engine import make_url


def plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def to_ms(seconds: float) -> float:
    return seconds * 1000


def p50_p99(latencies: list[float]) -> tuple[float, float]:
    if len(latencies) < 2:
        value = latencies[0] if latencies else math.nan
        return value, value
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return q[49], q[98]


async def exec_sql(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
