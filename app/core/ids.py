"""Ids are opaque strings to clients; a malformed one names nothing, so it is a 404, not a 422."""

from __future__ import annotations

import uuid

from app.core.errors import NotFound


def parse_id(value: str, what: str = "resource") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"No such {what}") from None
