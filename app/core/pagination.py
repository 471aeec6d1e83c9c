"""Opaque cursors for ``?cursor=&limit=`` paging."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TypeVar

from app.core.errors import ValidationFailed

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The position a cursor stands for; a cursor we did not issue is a 422."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, value = raw.partition(":")
        if version == "v1" and -(2**63) <= (position := int(value)) < 2**63:
            return position  # a bigint, or PostgreSQL would refuse it with a 500
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise ValidationFailed([{"loc": ["query", "cursor"], "msg": "is not a cursor this API issued"}])


def split_page(
    rows: Sequence[T], limit: int, position: Callable[[T], int]
) -> tuple[list[T], str | None]:
    """Rows were fetched ``limit + 1`` at a time: the page, and the cursor of the next one
    (None on the last page)."""
    page = list(rows[:limit])
    return page, encode_cursor(position(page[-1])) if len(rows) > limit else None
