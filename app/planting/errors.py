"""The planting domain's errors (each carries its HTTP status and machine ``code``)."""

from __future__ import annotations

from app.core.errors import Conflict, Unprocessable

# re-exported: redeeming energy that is not there is the ledger's own refusal
from app.ledger.transfers import InsufficientEnergy


class SoldOut(Conflict):
    code, title = "sold_out", "This item's budget is used up"


class NotAvailable(Conflict):
    code, title = "not_available", "This item cannot be redeemed now"


class OverReported(Unprocessable):
    code, title = "over_reported", "More planted than ordered"


class OrderCancelled(Conflict):
    code, title = "order_cancelled", "This order was cancelled"


class OrderNotPlanted(Conflict):
    code, title = "not_planted", "This order is not fully planted yet"


class OrderNotCancellable(Conflict):
    code, title = "not_cancellable", "This order can no longer be cancelled"


class BudgetBelowTaken(Conflict):
    code, title = "budget_below_taken", "The budget cannot go below what is already redeemed"


class NotRetryable(Conflict):
    code, title = "not_retryable", "Only failed deliveries can be retried"


__all__ = [
    "BudgetBelowTaken",
    "InsufficientEnergy",
    "NotAvailable",
    "NotRetryable",
    "OrderCancelled",
    "OrderNotCancellable",
    "OrderNotPlanted",
    "OverReported",
    "SoldOut",
]
