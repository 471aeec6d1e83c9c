"""Activities become energy: trust, time window, methodology, caps, then one ball each.

A whole batch is evaluated in memory between two sets of statements: first the cap counters it
touches are locked (so concurrent batches of the same user and kind queue there) and duplicates
are looked up; then activities, balls, ledger entries and counters are written set-based.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.users import UserRef
from app.energy.periods import ball_times, local_date, month_start
from app.energy.repository import CapKey, Counter, EnergyRepository, mint_entries
from app.rules.registry import ActiveRules, RulesRegistry
from app.rules.schema import ActivityRules

Status = Literal["minted", "capped", "duplicate", "rejected"]
ORIGIN_CLIENT = "client"
ORIGIN_PARTNER = "partner"


@dataclass(frozen=True)
class Incoming:
    """One reported activity, already shape-checked by the API schema."""

    external_id: str
    kind: str
    occurred_at: datetime
    quantity: Decimal | None = None
    attributes: dict[str, Any] | None = None


@dataclass
class Outcome:
    id: str
    kind: str
    status: Status
    energy_g: int = 0
    ball_id: uuid.UUID | None = None
    reason: str | None = None
    rules_version: int | None = None


@dataclass
class Pending:
    index: int
    user: UserRef
    event: Incoming
    rules: ActiveRules
    kind: ActivityRules
    computed_g: int
    factor: Decimal
    unit: str | None
    region: str | None
    cap_keys: list[tuple[str, CapKey]] = field(default_factory=list)


def _reject(event: Incoming, reason: str, rules: ActiveRules | None = None) -> Outcome:
    return Outcome(
        event.external_id,
        event.kind,
        "rejected",
        reason=reason,
        rules_version=rules.version if rules else None,
    )


def evaluate(
    index: int,
    user: UserRef,
    event: Incoming,
    origin: str,
    registry: RulesRegistry,
    now: datetime,
    check_window: bool = True,
) -> Pending | Outcome:
    """Everything that needs no database: rules version, kind, trust, window, energy.

    Pure: the economy simulator runs players through this very function."""
    rules = registry.at(event.occurred_at)
    kind = rules.rules.activities.get(event.kind)
    if kind is None:
        return _reject(event, "unknown_kind", rules)
    if origin not in kind.sources:
        return _reject(event, "untrusted_source", rules)
    ingest = rules.rules.ingest
    if check_window and event.occurred_at > now + ingest.max_future_skew:
        return _reject(event, "in_future", rules)
    if check_window and event.occurred_at < now - ingest.max_age:
        return _reject(event, "too_old", rules)
    factor = kind.for_region(user.region)
    if factor.energy_per_event_g is not None:
        computed, rate = factor.energy_per_event_g, Decimal(factor.energy_per_event_g)
    else:
        if event.quantity is None or event.quantity <= 0:
            return _reject(event, "invalid_quantity", rules)
        if kind.max_units_per_day is not None and event.quantity > Decimal(
            str(kind.max_units_per_day)
        ):
            return _reject(event, "implausible", rules)
        computed = factor.energy_g(float(event.quantity))
        rate = Decimal(str(factor.energy_per_unit_g))
    pending = Pending(index, user, event, rules, kind, computed, rate, factor.unit, factor.region)
    day = local_date(event.occurred_at, user.timezone)
    if kind.daily_cap_g is not None or kind.daily_cap_count is not None:
        pending.cap_keys.append(("day", (user.id, event.kind, "day", day)))
    if kind.monthly_cap_count is not None:
        pending.cap_keys.append(("month", (user.id, event.kind, "month", month_start(day))))
    return pending


def apply_caps(p: Pending, counters: dict[CapKey, Counter]) -> int:
    """What still fits under every cap; updates the counters when something is minted.
    Pure (counters are plain objects): shared with the economy simulator."""
    grams = p.computed_g
    keys = dict(p.cap_keys)
    day = counters.get(keys["day"]) if "day" in keys else None
    month = counters.get(keys["month"]) if "month" in keys else None
    if day is not None:
        if p.kind.daily_cap_count is not None and day.count >= p.kind.daily_cap_count:
            return 0
        if p.kind.daily_cap_g is not None:
            grams = max(0, min(grams, p.kind.daily_cap_g - day.grams))
    if (
        month is not None
        and p.kind.monthly_cap_count is not None
        and month.count >= p.kind.monthly_cap_count
    ):
        return 0
    if grams > 0:
        for counter in (day, month):
            if counter is not None:
                counter.count += 1
                counter.grams += grams
    return grams


async def ingest(
    session: AsyncSession,
    *,
    source: str,
    origin: str,
    events: list[tuple[UserRef, Incoming]],
    registry: RulesRegistry,
    now: datetime,
    check_window: bool = True,
) -> list[Outcome]:
    """Evaluate and record a batch; outcomes in input order. ``source`` scopes event ids
    ("client" or "partner:<id>"); ``origin`` is what the rules' ``sources`` trust.
    ``check_window=False`` is for step days, whose date was checked when it was recorded and
    which must mint whenever the day gets closed (even after a long worker outage)."""
    repo = EnergyRepository(session)
    outcomes: list[Outcome | None] = [None] * len(events)
    pending: list[Pending] = []
    for index, (user, event) in enumerate(events):
        evaluated = evaluate(index, user, event, origin, registry, now, check_window)
        if isinstance(evaluated, Outcome):
            outcomes[index] = evaluated
        else:
            pending.append(evaluated)

    counters = await repo.lock_counters([key for p in pending for _, key in p.cap_keys])
    existing = await repo.existing_activities(
        source, [(p.user.id, p.event.external_id) for p in pending]
    )

    activities: list[dict[str, Any]] = []
    balls: dict[tuple[uuid.UUID, str], dict[str, Any]] = {}
    minted: list[Pending] = []
    touched: dict[CapKey, Counter] = {}
    for p in sorted(pending, key=lambda p: (p.event.occurred_at, p.index)):
        found = existing.get((p.user.id, p.event.external_id))
        if found is not None:
            outcomes[p.index] = Outcome(
                p.event.external_id,
                found.kind,
                "duplicate",
                found.energy_g,
                found.ball_id,
                rules_version=found.rules_version,
            )
            continue
        energy = apply_caps(p, counters)
        for _, key in p.cap_keys:
            touched[key] = counters[key]
        ball_id = uuid.uuid4() if energy > 0 else None
        status: Status = "minted" if energy == p.computed_g else "capped"
        outcomes[p.index] = Outcome(
            p.event.external_id,
            p.event.kind,
            status,
            energy,
            ball_id,
            rules_version=p.rules.version,
        )
        activities.append(
            {
                "user_id": p.user.id,
                "source": source,
                "external_id": p.event.external_id,
                "kind": p.event.kind,
                "occurred_at": p.event.occurred_at,
                "received_at": now,
                "quantity": p.event.quantity,
                "unit": p.unit,
                "attributes": p.event.attributes,
                "region": p.region,
                "factor_g": p.factor,
                "rules_version": p.rules.version,
                "computed_g": p.computed_g,
                "energy_g": energy,
                "status": status,
                "ball_id": ball_id,
            }
        )
        if ball_id is not None:
            balls[(p.user.id, p.event.external_id)] = ball_row(
                ball_id,
                p.user,
                p.event.kind,
                energy,
                f"activity:{source}:{p.event.external_id}",
                p.event.occurred_at,
                now,
                p.rules,
                p.kind,
            )
            minted.append(p)

    inserted = await repo.insert_activities(activities)
    if len(inserted) != len(activities):
        # a concurrent request recorded some of these ids first (only possible for uncapped
        # kinds, which take no counter lock): report them as duplicates and mint nothing for them
        for p in minted[:]:
            activity_key = (p.user.id, p.event.external_id)
            if activity_key not in inserted:
                balls.pop(activity_key, None)
                minted.remove(p)
                outcomes[p.index] = Outcome(
                    p.event.external_id, p.event.kind, "duplicate", rules_version=p.rules.version
                )
    await mint_balls(repo, list(balls.values()))
    await repo.save_counters(touched)
    co2e: dict[uuid.UUID, int] = {}
    for ball in balls.values():
        co2e[ball["user_id"]] = co2e.get(ball["user_id"], 0) + ball["amount_g"]
    await repo.add_co2e(co2e)
    return [o for o in outcomes if o is not None]


def ball_row(
    ball_id: uuid.UUID,
    user: UserRef,
    kind_name: str,
    amount_g: int,
    ref: str,
    occurred_at: datetime,
    now: datetime,
    rules: ActiveRules,
    kind: ActivityRules,
    *,
    stealable: bool = True,
) -> dict[str, Any]:
    ripens_at, expires_at = ball_times(
        occurred_at,
        now,
        ripen_after=kind.ripen_after
        if kind.ripen_after is not None
        else rules.rules.balls.ripen_after,
        ripen_at_local=kind.ripen_at_local,
        expire_after=rules.rules.balls.expire_after,
        tz=user.timezone,
    )
    return {
        "id": ball_id,
        "user_id": user.id,
        "kind": kind_name,
        "ref": ref,
        "amount_g": amount_g,
        "remaining_g": amount_g,
        "stealable": stealable,
        "created_at": now,
        "ripens_at": ripens_at,
        "expires_at": expires_at,
        "expired_at": None,
        "expired_g": 0,
        "stolen_g": 0,
        "rules_version": rules.version,
    }


async def mint_balls(repo: EnergyRepository, balls: list[dict[str, Any]]) -> None:
    """Insert balls and their mint transfers (``system:minted`` → ball)."""
    await repo.insert_balls(balls)
    await repo.insert_entries(
        [
            entry
            for b in balls
            for entry in mint_entries(
                ball_id=b["id"],
                user_id=b["user_id"],
                amount_g=b["amount_g"],
                ref=b["ref"],
                rules_version=b["rules_version"],
                at=b["created_at"],
            )
        ]
    )
