"""The rewards domain's errors (each carries its HTTP status and machine ``code``)."""

from __future__ import annotations

from app.core.errors import Conflict

# the same refusals as planting's, with the same codes
from app.planting.errors import InsufficientEnergy, NotAvailable, SoldOut


class LimitReached(Conflict):
    code, title = "limit_reached", "A redemption limit is reached"


class NotPending(Conflict):
    code, title = "not_pending", "This redemption is no longer waiting for the partner"


class FulfilmentMismatch(Conflict):
    code, title = "fulfilment_mismatch", "This reward is not fulfilled that way"


__all__ = [
    "FulfilmentMismatch",
    "InsufficientEnergy",
    "LimitReached",
    "NotAvailable",
    "NotPending",
    "SoldOut",
]
