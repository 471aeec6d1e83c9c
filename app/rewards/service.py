"""Rewards: the catalog users redeem energy for, redemptions, and partners fulfilling them.

Redeeming is one transaction: the user's row and then the reward's are locked, every rule is
checked against current values (availability, budget, the per-user limit, the rules' daily
ceiling, the balance), then the energy is burned through the ledger, the budget taken, a code
bound (code pools) or the partner told (``reward.redeemed`` through the webhook outbox), and
the redemption written. Any refusal raises before anything is written, and the session rolls
back whatever was: a redemption happens whole or not at all, and is never oversold.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin import audit
from app.core.errors import NotFound, Unauthorized, ValidationFailed
from app.core.pagination import split_page
from app.core.security import Keys
from app.ledger.booking import BURNED
from app.ledger.transfers import credit_from_system, debit_to_system
from app.planting import webhooks
from app.planting.errors import BudgetBelowTaken
from app.planting.repository import PlantingRepository, history_at
from app.rewards.errors import (
    FulfilmentMismatch,
    InsufficientEnergy,
    LimitReached,
    NotAvailable,
    NotPending,
    SoldOut,
)
from app.rewards.repository import RewardsRepository
from app.rewards.schemas import (
    CodesAdded,
    RedemptionCreated,
    RedemptionOut,
    RedemptionPage,
    RewardAdminOut,
    RewardCreate,
    RewardOut,
    RewardPatch,
)
from app.rules.registry import ActiveRules

REDEEMED = "reward.redeemed"
EXPIRED = "reward.expired"
TIMEOUT_REASON = "timeout"
OVERDUE_BATCH = 100


def redemption_ref(redemption_id: uuid.UUID) -> str:
    """The ledger ``ref`` of a redemption's burn and refund."""
    return f"redemption:{redemption_id}"


def code_digest(code: str) -> str:
    """How a pool recognises a code it already has, without keeping it in the clear."""
    return hashlib.sha256(code.encode()).hexdigest()


# --- shapes ----------------------------------------------------------------------------------


def remaining(row: RowMapping) -> int:
    left = max(0, int(row["budget"]) - int(row["taken"]))
    return min(left, int(row["codes_free"])) if row["fulfilment"] == "codes" else left


def reward_out(row: RowMapping) -> RewardOut:
    return RewardOut(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        kind=row["kind"],
        cost_g=row["cost_g"],
        partner_id=row["partner_id"],
        partner_name=row["partner_name"],
        remaining=remaining(row),
        per_user_limit=row["per_user_limit"],
        limit_period=row["limit_period"],
        valid_from=row["valid_from"],
        valid_until=row["valid_until"],
        fulfilment=row["fulfilment"],
    )


def reward_admin_out(row: RowMapping) -> RewardAdminOut:
    return RewardAdminOut(
        **reward_out(row).model_dump(),
        budget=row["budget"],
        taken=row["taken"],
        codes_free=row["codes_free"],
        fulfil_timeout_s=row["fulfil_timeout_s"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def redemption_out(row: RowMapping, keys: Keys) -> RedemptionOut:
    code = row["code_encrypted"]
    return RedemptionOut(
        id=row["id"],
        reward_id=row["reward_id"],
        reward_name=row["reward_name"],
        reward_kind=row["reward_kind"],
        partner_id=row["partner_id"],
        status=row["status"],
        code=keys.decrypt(bytes(code)).decode() if code is not None else None,
        cost_g=row["cost_g"],
        created_at=row["created_at"],
        deadline=row["deadline"],
        fulfilled_at=row["fulfilled_at"],
        failed_at=row["failed_at"],
        failure_reason=row["failure_reason"],
    )


# --- users -----------------------------------------------------------------------------------


async def list_rewards(session: AsyncSession, now: datetime) -> list[RewardOut]:
    """What can be redeemed now (available, within its validity window)."""
    return [reward_out(r) for r in await RewardsRepository(session).rewards(live_at=now)]


def period_start(period: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    """The start of the user's local ``period`` that contains ``now`` (None: "ever")."""
    local = now.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start = midnight
    elif period == "week":
        start = midnight - timedelta(days=midnight.weekday())
    elif period == "month":
        start = midnight.replace(day=1)
    elif period == "year":
        start = midnight.replace(month=1, day=1)
    else:
        return None
    # rebuilt in the zone: a DST change between the start and now keeps the start's own offset
    return start.replace(tzinfo=None).replace(tzinfo=tz)


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ValueError, KeyError):  # pragma: no cover - zones are validated when set
        return ZoneInfo("UTC")


async def redeem(
    session: AsyncSession,
    keys: Keys,
    user_id: uuid.UUID,
    reward_id: uuid.UUID,
    rules: ActiveRules,
    now: datetime,
) -> RedemptionCreated:
    """Redeem one reward (see the module doc). 409 ``not_available`` (closed, outside its
    validity, rewards disabled by the rules), ``sold_out`` (budget or code pool used up),
    ``limit_reached`` (the reward's per-user limit, or the rules' daily ceiling),
    ``insufficient_energy``."""
    repo = RewardsRepository(session)
    me = await repo.lock_user(user_id)
    if me is None:
        raise Unauthorized("This login has ended; sign in again")
    reward = await repo.reward(reward_id, lock=True)
    if reward is None:
        raise NotFound("No such reward")
    settings = rules.rules.rewards
    if (
        not settings.enabled
        or reward["status"] != "available"
        or (reward["valid_from"] is not None and now < reward["valid_from"])
        or (reward["valid_until"] is not None and now >= reward["valid_until"])
    ):
        raise NotAvailable(f"{reward['name']} cannot be redeemed now")
    if remaining(reward) <= 0:
        raise SoldOut(f"No {reward['name']} left")
    tz = _zone(me["timezone"])
    cost = int(reward["cost_g"])
    if reward["per_user_limit"] is not None:
        since = period_start(reward["limit_period"], now, tz)
        count, _ = await repo.redeemed_since(user_id, reward_id, since)
        if count >= reward["per_user_limit"]:
            per = "" if reward["limit_period"] == "ever" else f" per {reward['limit_period']}"
            raise LimitReached(
                f"At most {reward['per_user_limit']} of {reward['name']}{per}",
                limit="per_user_limit",
            )
    if settings.daily_limit_g > 0:
        _, spent = await repo.redeemed_since(user_id, None, period_start("day", now, tz))
        if spent + cost > settings.daily_limit_g:
            raise LimitReached(
                f"At most {settings.daily_limit_g} g of energy on rewards per day "
                f"({spent} g spent today)",
                limit="daily_limit_g",
            )
    if int(me["balance_g"]) < cost:
        raise InsufficientEnergy(f"This needs {cost} g of energy")

    redemption_id = uuid.uuid4()
    code: bytes | None = None
    if reward["fulfilment"] == "codes":
        code = await repo.claim_code(reward_id, redemption_id, now)
        if code is None:  # pragma: no cover - remaining() counted the free codes under the lock
            raise SoldOut(f"No {reward['name']} left")
    if not await repo.take_budget(reward_id, now):  # pragma: no cover - checked under the lock
        raise SoldOut(f"No {reward['name']} left")
    balance = await debit_to_system(
        session,
        user_id=user_id,
        amount_g=cost,
        account=BURNED,
        reason="burn",
        ref=redemption_ref(redemption_id),
        rules_version=rules.version,
        now=now,
    )
    pending = reward["fulfilment"] == "partner"
    timeout = (
        timedelta(seconds=reward["fulfil_timeout_s"])
        if reward["fulfil_timeout_s"] is not None
        else settings.fulfil_timeout
    )
    deadline = now + timeout if pending else None
    await repo.insert_redemption(
        {
            "id": redemption_id,
            "user_id": user_id,
            "reward_id": reward_id,
            "partner_id": reward["partner_id"],
            "cost_g": cost,
            "status": "pending" if pending else "issued",
            "code_encrypted": code,
            "deadline": deadline,
            "rules_version": rules.version,
            "now": now,
            "fulfilled_at": None if pending else now,
        }
    )
    if pending:
        await webhooks.enqueue(
            PlantingRepository(session),
            reward["partner_id"],
            REDEEMED,
            {
                "redemption_id": str(redemption_id),
                "reward": {"id": str(reward_id), "name": reward["name"], "kind": reward["kind"]},
                "cost_g": cost,
                "created_at": history_at(now),
                "deadline": history_at(now + timeout),
            },
            now,
        )
    return RedemptionCreated(
        id=redemption_id,
        reward_id=reward_id,
        reward_name=reward["name"],
        reward_kind=reward["kind"],
        partner_id=reward["partner_id"],
        status="pending" if pending else "issued",
        code=keys.decrypt(code).decode() if code is not None else None,
        cost_g=cost,
        created_at=now,
        deadline=deadline,
        fulfilled_at=None if pending else now,
        failed_at=None,
        failure_reason=None,
        balance_g=balance,
    )


async def list_redemptions(
    session: AsyncSession,
    keys: Keys,
    *,
    user_id: uuid.UUID | None = None,
    partner_id: uuid.UUID | None = None,
    status: str | None = None,
    before_seq: int | None,
    limit: int,
) -> RedemptionPage:
    """A user's (with their codes) or a partner's redemptions, newest first."""
    rows = await RewardsRepository(session).redemptions(
        user_id=user_id, partner_id=partner_id, status=status, before_seq=before_seq, limit=limit
    )
    page, next_cursor = split_page(rows, limit, lambda r: r["seq"])
    return RedemptionPage(
        redemptions=[redemption_out(r, keys) for r in page], next_cursor=next_cursor
    )


# --- partners --------------------------------------------------------------------------------


async def _pending(
    repo: RewardsRepository, redemption_id: uuid.UUID, partner_id: uuid.UUID | None
) -> RowMapping:
    row = await repo.redemption(redemption_id, partner_id=partner_id, lock=True)
    if row is None:
        raise NotFound("No such redemption")
    if row["status"] != "pending":
        raise NotPending(f"This redemption is {row['status']}", redemption_status=row["status"])
    return row


async def fulfil(
    session: AsyncSession,
    keys: Keys,
    partner_id: uuid.UUID,
    redemption_id: uuid.UUID,
    code: str | None,
    now: datetime,
) -> RedemptionOut:
    """The partner delivered the reward (optionally with a code the user's app shows)."""
    repo = RewardsRepository(session)
    await _pending(repo, redemption_id, partner_id)
    await repo.mark_issued(redemption_id, keys.encrypt(code.encode()) if code else None, now)
    row = await repo.redemption(redemption_id)
    assert row is not None
    return redemption_out(row, keys)


async def fail_and_refund(
    session: AsyncSession,
    redemption_id: uuid.UUID,
    reason: str,
    rules_version: int,
    now: datetime,
    *,
    partner_id: uuid.UUID | None = None,
) -> RowMapping:
    """Fail a pending redemption: its energy back to the gram from ``system:burned`` and its
    budget released — in the caller's transaction, under the redemption's row lock (so a
    fulfil and a fail, or a fail and the timeout, cannot both happen)."""
    repo = RewardsRepository(session)
    row = await _pending(repo, redemption_id, partner_id)
    await repo.mark_failed(redemption_id, reason, now)
    await credit_from_system(
        session,
        user_id=row["user_id"],
        amount_g=int(row["cost_g"]),
        account=BURNED,
        reason="refund",
        ref=redemption_ref(redemption_id),
        rules_version=rules_version,
        now=now,
    )
    await repo.release_budget(row["reward_id"], now)
    failed = await repo.redemption(redemption_id)
    assert failed is not None
    return failed


async def fail(
    session: AsyncSession,
    keys: Keys,
    partner_id: uuid.UUID,
    redemption_id: uuid.UUID,
    reason: str,
    rules_version: int,
    now: datetime,
) -> RedemptionOut:
    """The partner could not deliver: the redemption fails and the user is refunded."""
    row = await fail_and_refund(
        session, redemption_id, reason, rules_version, now, partner_id=partner_id
    )
    return redemption_out(row, keys)


async def expire_overdue(session: AsyncSession, now: datetime, rules_version: int) -> int:
    """Worker job: fail and refund every pending redemption past its deadline, telling the
    partner (``reward.expired``) so it does not deliver afterwards. How many."""
    repo = RewardsRepository(session)
    expired = 0
    due = await repo.overdue(now, OVERDUE_BATCH)
    if due:
        await repo.lock_users_of(due)  # users before rewards, as every redemption locks them
    for redemption_id in due:
        row = await fail_and_refund(session, redemption_id, TIMEOUT_REASON, rules_version, now)
        await webhooks.enqueue(
            PlantingRepository(session),
            row["partner_id"],
            EXPIRED,
            {
                "redemption_id": str(redemption_id),
                "reward": {"id": str(row["reward_id"]), "name": row["reward_name"]},
                "reason": TIMEOUT_REASON,
            },
            now,
        )
        expired += 1
    return expired


# --- operators -------------------------------------------------------------------------------


async def create_reward(
    session: AsyncSession, payload: RewardCreate, now: datetime
) -> RewardAdminOut:
    """Add a reward for a partner (operators)."""
    repo = RewardsRepository(session)
    if await repo.partner(payload.partner_id) is None:
        raise ValidationFailed([{"loc": ["body", "partner_id"], "msg": "no such partner"}])
    reward_id = uuid.uuid4()
    await repo.insert_reward(
        {
            **payload.model_dump(exclude={"partner_id"}),
            "id": reward_id,
            "partner_id": payload.partner_id,
            "now": now,
        }
    )
    await audit.record(
        session,
        action="reward.create",
        target=f"reward:{reward_id}",
        summary=f"{payload.name} ({payload.kind}, {payload.cost_g} g, budget {payload.budget}, "
        f"{payload.fulfilment})",
        at=now,
    )
    row = await repo.reward(reward_id)
    assert row is not None
    return reward_admin_out(row)


async def list_all_rewards(session: AsyncSession) -> list[RewardAdminOut]:
    return [reward_admin_out(r) for r in await RewardsRepository(session).rewards(live_at=None)]


async def update_reward(
    session: AsyncSession, reward_id: uuid.UUID, patch: RewardPatch, now: datetime
) -> RewardAdminOut:
    """Change a reward; the budget cannot go below what was already redeemed."""
    repo = RewardsRepository(session)
    values = patch.model_dump(exclude_unset=True)
    for required in ("name", "budget", "status"):
        if required in values and values[required] is None:
            raise ValidationFailed([{"loc": ["body", required], "msg": "may not be null"}])
    updated = await repo.update_reward(reward_id, values, now) if values else True
    row = await repo.reward(reward_id)
    if updated is None or row is None:
        raise NotFound("No such reward")
    if updated is False:
        raise BudgetBelowTaken(f"{row['taken']} are already redeemed", taken=row["taken"])
    if values:
        await audit.record(
            session,
            action="reward.update",
            target=f"reward:{reward_id}",
            summary="changed " + ", ".join(sorted(values)),
            at=now,
        )
    return reward_admin_out(row)


async def add_codes(
    session: AsyncSession, keys: Keys, reward_id: uuid.UUID, codes: list[str], now: datetime
) -> CodesAdded:
    """Add codes to a reward's pool (kept encrypted; one already in the pool is skipped)."""
    repo = RewardsRepository(session)
    reward = await repo.reward(reward_id, lock=True)
    if reward is None:
        raise NotFound("No such reward")
    if reward["fulfilment"] != "codes":
        raise FulfilmentMismatch("This reward is fulfilled by its partner, not from codes")
    unique = {code_digest(c): c for c in codes}
    added = await repo.add_codes(
        reward_id, [(h, keys.encrypt(c.encode())) for h, c in unique.items()], now
    )
    await audit.record(
        session,
        action="reward.codes",
        target=f"reward:{reward_id}",
        summary=f"{added} codes added ({len(codes) - added} already in the pool or repeated)",
        at=now,
    )
    return CodesAdded(added=added, codes_free=int(reward["codes_free"]) + added)
