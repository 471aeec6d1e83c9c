"""Every table model, imported in one place so ``metadata`` is complete (Alembic, tests)."""

from app.accounts.models import AuthSession, RefreshToken, User
from app.core.idempotency import IdempotencyRecord
from app.core.models import metadata
from app.partners.models import Partner

__all__ = ["AuthSession", "IdempotencyRecord", "Partner", "RefreshToken", "User", "metadata"]
