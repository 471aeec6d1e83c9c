"""Every table model, imported in one place so ``metadata`` is complete (Alembic, tests)."""

from app.accounts.models import AuthSession, RefreshToken, User
from app.admin.audit import AuditEntry
from app.campaigns.models import Campaign, CampaignDonation, CampaignDonor
from app.core.idempotency import IdempotencyRecord
from app.core.models import metadata
from app.energy.models import (
    Activity,
    CapCounter,
    CarbonMonth,
    EnergyBall,
    LedgerEntry,
    StepDay,
)
from app.game.feed.models import FeedItem
from app.game.models import (
    BallSteal,
    Block,
    CollectedScore,
    FriendRequest,
    Friendship,
    Prop,
    WateringDay,
)
from app.partners.models import Partner
from app.planting.models import (
    CatalogItem,
    OrderReport,
    Planting,
    PlantingOrder,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from app.rewards.models import Redemption, Reward, RewardCode
from app.rules.models import RulesVersion

__all__ = [
    "Activity",
    "AuditEntry",
    "AuthSession",
    "BallSteal",
    "Block",
    "Campaign",
    "CampaignDonation",
    "CampaignDonor",
    "CapCounter",
    "CarbonMonth",
    "CatalogItem",
    "CollectedScore",
    "EnergyBall",
    "FeedItem",
    "FriendRequest",
    "Friendship",
    "IdempotencyRecord",
    "LedgerEntry",
    "OrderReport",
    "Partner",
    "Planting",
    "PlantingOrder",
    "Prop",
    "Redemption",
    "RefreshToken",
    "Reward",
    "RewardCode",
    "RulesVersion",
    "StepDay",
    "User",
    "WateringDay",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "metadata",
]
