"""Activities become energy: trust, time window, methodology, caps, then one ball each.

The rules are applied in Python — :func:`screen` (rules version, kind, trust, window) and
:func:`value` (the factor for a region, the grams) — and shared with the economy simulator through
:func:`evaluate` and :func:`apply_caps`. What needs the database is done by ONE statement per
request (:data:`app.energy.repository.INGEST`): it reads the users' zone and region, finds events
recorded before, walks the caps from today's usage (``apply_caps`` in SQL), and writes activities,
balls, ledger entries, counters and ``co2e_avoided_g``. Python cannot know a user's region before
that statement, so each event goes in valued for its kind's default factor and for every region
the kind overrides; the statement takes the one that applies.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Literal

import orjson

from app.core.sql import Pg
from app.core.users import UserRef
from app.energy.periods import ball_times, local_date, month_start
from app.energy.repository import (
    INGEST,
    ActivityRow,
    CapKey,
    Counter,
    EventIn,
    RegionalValue,
    ingest_params,
)
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
    max_units: Decimal | None = None  # the day's unit bound (per-unit factors)


@dataclass(frozen=True)
class Value:
    """What one event is worth where one factor applies."""

    computed_g: int
    factor: Decimal  # grams per event, or per unit
    unit: str | None
    region: str | None  # the region whose override applied; None: the kind's defaults
    max_units: Decimal | None = None  # the most units the user's events of a day count


def _reject(event: Incoming, reason: str, rules: ActiveRules | None = None) -> Outcome:
    return Outcome(
        event.external_id,
        event.kind,
        "rejected",
        reason=reason,
        rules_version=rules.version if rules else None,
    )


def screen(
    event: Incoming,
    origin: str,
    registry: RulesRegistry,
    now: datetime,
    check_window: bool = True,
    kinds: frozenset[str] | None = None,
) -> tuple[ActiveRules, ActivityRules] | Outcome:
    """What needs neither the user nor the database: the rules version in force when the event
    happened, its kind, whether ``origin`` may report it (and, for a partner limited to
    ``kinds``, whether it is one of them), and the time window."""
    rules = registry.at(event.occurred_at)
    kind = rules.rules.activities.get(event.kind)
    if kind is None:
        return _reject(event, "unknown_kind", rules)
    if origin not in kind.sources or (kinds is not None and event.kind not in kinds):
        return _reject(event, "untrusted_source", rules)
    ingest = rules.rules.ingest
    if check_window and event.occurred_at > now + ingest.max_future_skew:
        return _reject(event, "in_future", rules)
    if check_window and event.occurred_at < now - ingest.max_age:
        return _reject(event, "too_old", rules)
    return rules, kind


def value(event: Incoming, kind: ActivityRules, region: str | None) -> Value | str:
    """The event's grams for a user of ``region`` (its kind's factor there), or why it has none
    (``invalid_quantity``, ``implausible``)."""
    factor = kind.for_region(region)
    if factor.energy_per_event_g is not None:
        return Value(
            factor.energy_per_event_g,
            Decimal(factor.energy_per_event_g),
            factor.unit,
            factor.region,
        )
    if event.quantity is None or event.quantity <= 0:
        return "invalid_quantity"
    max_units = (
        Decimal(str(factor.max_units_per_day)) if factor.max_units_per_day is not None else None
    )
    if max_units is not None and event.quantity > max_units:
        return "implausible"  # more in one event than a whole day may count
    return Value(
        factor.energy_g(float(event.quantity)),
        Decimal(str(factor.energy_per_unit_g)),
        factor.unit,
        factor.region,
        max_units,
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
    screened = screen(event, origin, registry, now, check_window)
    if isinstance(screened, Outcome):
        return screened
    rules, kind = screened
    valued = value(event, kind, user.region)
    if isinstance(valued, str):
        return _reject(event, valued, rules)
    pending = Pending(
        index,
        user,
        event,
        rules,
        kind,
        valued.computed_g,
        valued.factor,
        valued.unit,
        valued.region,
        max_units=valued.max_units,
    )
    day = local_date(event.occurred_at, user.timezone)
    if (
        kind.daily_cap_g is not None
        or kind.daily_cap_count is not None
        or valued.max_units is not None
    ):
        pending.cap_keys.append(("day", (user.id, event.kind, "day", day)))
    if kind.monthly_cap_count is not None:
        pending.cap_keys.append(("month", (user.id, event.kind, "month", month_start(day))))
    return pending


def apply_caps(p: Pending, counters: dict[CapKey, Counter]) -> int:
    """What still fits under every cap; updates the counters when something is minted.
    Pure (counters are plain objects): shared with the economy simulator. The ingest statement
    walks the same rule in SQL (``walk`` in :mod:`app.energy.repository`)."""
    grams = p.computed_g
    keys = dict(p.cap_keys)
    day = counters.get(keys["day"]) if "day" in keys else None
    month = counters.get(keys["month"]) if "month" in keys else None
    fit: Decimal | None = None
    if day is not None and p.max_units is not None and p.event.quantity is not None:
        # the day's units in total: what is left of the bound counts, at the event's factor
        fit = max(Decimal(0), min(p.event.quantity, p.max_units - day.units))
        if fit != p.event.quantity:
            grams = int((p.factor * fit).to_integral_value(rounding=ROUND_FLOOR))
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
        if day is not None and fit is not None:
            day.units += fit
    return grams


def plan(
    events: Sequence[tuple[uuid.UUID, Incoming]],
    origin: str,
    registry: RulesRegistry,
    now: datetime,
    kinds: frozenset[str] | None = None,
) -> tuple[list[EventIn], list[RegionalValue]]:
    """The statement's input: each event screened and valued at its kind's default factor, plus
    its value for every region the kind overrides (numbered from 1 in request order).
    ``kinds``: the only kinds this reporter may report (None: whatever ``origin`` may)."""
    rows: list[EventIn] = []
    regional: list[RegionalValue] = []
    for n, (user_id, event) in enumerate(events, start=1):
        attributes = orjson.dumps(event.attributes).decode() if event.attributes else None
        screened = screen(event, origin, registry, now, kinds=kinds)
        if isinstance(screened, Outcome):
            assert screened.rules_version is not None  # screen always names the version
            rows.append(
                EventIn(
                    user_id,
                    event.external_id,
                    event.kind,
                    event.occurred_at,
                    event.quantity,
                    attributes,
                    screened.rules_version,
                    screened.reason,
                )
            )
            continue
        rules, kind = screened
        default = value(event, kind, None)
        ripen_after = (
            kind.ripen_after if kind.ripen_after is not None else rules.rules.balls.ripen_after
        )
        rows.append(
            EventIn(
                user_id,
                event.external_id,
                event.kind,
                event.occurred_at,
                event.quantity,
                attributes,
                rules.version,
                None,
                *_value_columns(default),
                max_units=default.max_units if isinstance(default, Value) else None,
                day_cap_g=kind.daily_cap_g,
                day_cap_count=kind.daily_cap_count,
                month_cap_count=kind.monthly_cap_count,
                ripens_base=event.occurred_at + ripen_after,
                ripen_at_local=kind.ripen_at_local,
                expire_after=rules.rules.balls.expire_after,
            )
        )
        for region in kind.regions:
            valued = value(event, kind, region)
            max_units = valued.max_units if isinstance(valued, Value) else None
            regional.append(RegionalValue(n, region, *_value_columns(valued), max_units))
    return rows, regional


def _value_columns(
    valued: Value | str,
) -> tuple[int | None, Decimal | None, str | None, str | None]:
    if isinstance(valued, str):
        return None, None, None, valued
    return valued.computed_g, valued.factor, valued.unit, None


async def ingest(
    pg: Pg,
    *,
    source: str,
    origin: str,
    events: Sequence[tuple[uuid.UUID, Incoming]],
    registry: RulesRegistry,
    now: datetime,
    kinds: frozenset[str] | None = None,
) -> list[ActivityRow]:
    """Evaluate and record a batch in one statement; one row per event in input order, with
    ``status`` None for an event whose user does not exist. ``source`` scopes event ids
    ("client" or "partner:<id>"); ``origin`` is what the rules' ``sources`` trust; ``kinds``
    what a partner was granted (None: all its origin may report)."""
    rows, regional = plan(events, origin, registry, now, kinds)
    return await pg.fetch(INGEST, **ingest_params(rows, regional, source=source, now=now))


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
    """A ball as the ingest statement writes it (the economy simulator's model of one)."""
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
