"""An energy ball's state, derived from the clock so nothing rewrites rows at 07:00.

The same predicate in Python (:func:`ball_state`, for rows already read) and in SQL (:func:`live`,
:func:`ripe`, :func:`expired`, for statements), so every domain agrees on what "ripe" means.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

BallState = Literal["growing", "ripe", "collected", "expired"]


def ball_state(
    now: datetime, remaining_g: int, ripens_at: datetime, expires_at: datetime, expired: bool
) -> BallState:
    if expired or (remaining_g > 0 and now >= expires_at):
        return "expired"
    if remaining_g == 0:
        return "collected"
    return "growing" if now < ripens_at else "ripe"


def live(b: str = "b", now: str = ":now") -> str:
    """Still holds energy and has not expired (growing or ripe)."""
    return f"({b}.remaining_g > 0 AND {b}.expired_at IS NULL AND {b}.expires_at > {now})"


def ripe(b: str = "b", now: str = ":now") -> str:
    """Live and past its ripening time: collectible now."""
    return f"({live(b, now)} AND {b}.ripens_at <= {now})"


def expired(b: str = "b", now: str = ":now") -> str:
    """Booked as expired, or past its time with energy left."""
    return f"({b}.expired_at IS NOT NULL OR ({b}.remaining_g > 0 AND {b}.expires_at <= {now}))"
