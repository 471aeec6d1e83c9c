"""JSON responses built straight from rows with orjson (hot routes: no pydantic pass).

Routes that answer this way keep ``response_model=`` for the OpenAPI document; the body is the
same JSON the model would produce (UUIDs as strings, UTC times with ``Z``)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from starlette.responses import Response

OPTIONS = orjson.OPT_UTC_Z


def _default(value: Any) -> Any:
    # asyncpg hands back its own UUID class (a uuid.UUID subclass orjson does not take natively)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def dumps(content: Any) -> bytes:
    return orjson.dumps(content, default=_default, option=OPTIONS)


def json_response(content: Any, status_code: int = 200, **headers: str) -> Response:
    return Response(
        dumps(content),
        status_code=status_code,
        media_type="application/json",
        headers=headers or None,
    )


def fields(row: Any) -> dict[str, Any]:
    """A dataclass row as a shallow dict (``dataclasses.asdict`` deep-copies every value)."""
    return {name: getattr(row, name) for name in row.__dataclass_fields__}
