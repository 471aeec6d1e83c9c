"""The campaigns domain's errors (each carries its HTTP status and machine ``code``)."""

from __future__ import annotations

from app.core.errors import Conflict
from app.ledger.transfers import InsufficientEnergy


class NotActive(Conflict):
    code, title = "not_active", "This campaign is not taking donations"


class DonationLimitReached(Conflict):
    code, title = "limit_reached", "A donation limit is reached"


__all__ = ["DonationLimitReached", "InsufficientEnergy", "NotActive"]
