"""Every table model, imported in one place so ``metadata`` is complete (Alembic, tests)."""

from app.accounts.models import AuthSession, RefreshToken, User
from app.core.idempotency import IdempotencyRecord
from app.core.models import metadata
from app.energy.models import Activity, CapCounter, EnergyBall, LedgerEntry, StepDay
from app.game.feed.models import FeedItem
from app.game.models import BallSteal, Block, FriendRequest, Friendship, Prop, WateringDay
from app.game.rules.models import RulesVersion
from app.partners.models import Partner

__all__ = [
    "Activity",
    "AuthSession",
    "BallSteal",
    "Block",
    "CapCounter",
    "EnergyBall",
    "FeedItem",
    "FriendRequest",
    "Friendship",
    "IdempotencyRecord",
    "LedgerEntry",
    "Partner",
    "Prop",
    "RefreshToken",
    "RulesVersion",
    "StepDay",
    "User",
    "WateringDay",
    "metadata",
]
