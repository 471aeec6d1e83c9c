"""Set-based inserts whose SQL text never changes with the number of rows.

``INSERT ... SELECT FROM unnest($1::t1[], $2::t2[], ...)`` sends one array per column, so a batch
of 1 and a batch of 500 share one prepared statement (and SQLAlchemy's compiled cache), instead of
a multi-row VALUES list rebuilt with thousands of parameters on every call.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import TextClause, text
from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import AsyncSession

Column = tuple[str, str]  # (name, PostgreSQL type)


@lru_cache(maxsize=64)
def _statement(table: str, columns: tuple[Column, ...], suffix: str) -> TextClause:
    names = ", ".join(name for name, _ in columns)
    arrays = ", ".join(
        f"CAST(:{name} AS {'text' if pg == 'jsonb' else pg}[])" for name, pg in columns
    )
    select = ", ".join(f"CAST({name} AS jsonb)" if pg == "jsonb" else name for name, pg in columns)
    return text(
        f"INSERT INTO {table} ({names}) SELECT {select} "  # noqa: S608 (constant identifiers)
        f"FROM unnest({arrays}) AS t({names}) {suffix}"
    )


def _param(value: Any, pg: str) -> Any:
    if pg == "jsonb" and value is not None:
        return orjson.dumps(value).decode()
    return value


async def insert_rows(
    session: AsyncSession,
    table: str,
    columns: Sequence[Column],
    rows: Sequence[dict[str, Any]],
    suffix: str = "",
) -> Result[Any]:
    """Insert ``rows`` (dicts keyed by column name) in one statement; ``suffix`` may add
    ``ON CONFLICT ... RETURNING ...``."""
    statement = _statement(table, tuple(columns), suffix)
    params = {name: [_param(row[name], pg) for row in rows] for name, pg in columns}
    return await session.execute(statement, params)
