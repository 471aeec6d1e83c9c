"""Durations as designers and operators write them: ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"`` or
integer seconds."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | int | timedelta) -> timedelta:
    """Parse ``"90s"``/``"15m"``/``"24h"``/``"7d"``/``"3600"``/``3600`` into a timedelta.

    Raises ``ValueError`` with a message fit to show a designer.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):  # bool is an int; True is not a duration
        raise ValueError("must be a duration such as '90s', '15m', '24h', '7d' or integer seconds")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    raise ValueError("must be a duration such as '90s', '15m', '24h', '7d' or integer seconds")


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of a duration (``timedelta(hours=24)`` → ``"24h"``)."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
