"""What every domain needs to know about a user to value and time their energy."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class UserRef:
    id: uuid.UUID
    timezone: str
    region: str | None
