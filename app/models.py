"""Every table model, imported in one place so ``metadata`` is complete (Alembic, tests)."""

from app.accounts.models import AuthSession, RefreshToken, User
from app.core.idempotency import IdempotencyRecord
from app.core.models import metadata
from app.energy.models import Activity, CapCounter, EnergyBall, LedgerEntry, StepDay
from app.game.feed.models import FeedItem
from app.game.rules.models import RulesVersion
from app.partners.models import Partner

__all__ = [
    "Activity",
    "AuthSession",
    "CapCounter",
    "EnergyBall",
    "FeedItem",
    "IdempotencyRecord",
    "LedgerEntry",
    "Partner",
    "RefreshToken",
    "RulesVersion",
    "StepDay",
    "User",
    "metadata",
]
