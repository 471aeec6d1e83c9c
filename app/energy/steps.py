"""Daily step totals: recorded as they grow, minted once as a walking ball after the day ends.

A closed day is minted the moment anyone needs it (its owner's or a friend's forest is read, or a
total arrives for a day already over) and by the worker for everyone else. A report is one
statement (:data:`app.energy.repository.RECORD_STEPS`): the user's zone read, the date checked,
the total kept, and — for a date already over — every ended day minted through the same minting
core as activities. A day's total is known only in the database, so it is valued there, from the
rules' walking terms (:func:`walking_terms`), exactly as :func:`app.energy.ingest.value` values a
walking event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Unauthorized, Unprocessable
from app.core.sql import Pg
from app.core.users import UserRef
from app.energy.ingest import ORIGIN_CLIENT
from app.energy.periods import local_date, local_midnight
from app.energy.repository import (
    CLOSE_DUE_DAYS,
    CLOSE_USER_DAYS,
    RECORD_STEPS,
    RegionalWalking,
    WalkingTerms,
    terms_params,
)
from app.rules.registry import RulesRegistry

STEPS_SOURCE = "steps"
WALKING = "walking"


class Implausible(Unprocessable):
    code, title = "implausible", "Implausible value"


class DateOutOfRange(Unprocessable):
    code, title = "date_out_of_range", "Date outside the accepted window"


@dataclass(frozen=True)
class StepsState:
    day: date
    steps: int
    minted: bool
    energy_g: int


def walking_terms(registry: RulesRegistry) -> dict[str, Any]:
    """Walking under every rules version, as the step statements' parameters."""
    terms: list[WalkingTerms] = []
    regional: list[RegionalWalking] = []
    for active in registry.versions:
        rules = active.rules
        walking = rules.activities.get(WALKING)
        if walking is None:
            terms.append(
                WalkingTerms(
                    active.version,
                    active.effective_from,
                    rules.ingest.max_age,
                    rules.balls.ripen_after,
                    rules.balls.expire_after,
                )
            )
            continue
        default = walking.for_region(None)
        terms.append(
            WalkingTerms(
                version=active.version,
                effective_from=active.effective_from,
                max_age=rules.ingest.max_age,
                ripen_after=walking.ripen_after
                if walking.ripen_after is not None
                else rules.balls.ripen_after,
                expire_after=rules.balls.expire_after,
                known=True,
                trusted=ORIGIN_CLIENT in walking.sources,
                per_event_g=default.energy_per_event_g,
                per_unit_g=_per_unit(default.energy_per_unit_g),
                unit=default.unit,
                max_units=_per_unit(walking.max_units_per_day),
                day_cap_g=walking.daily_cap_g,
                day_cap_count=walking.daily_cap_count,
                month_cap_count=walking.monthly_cap_count,
                ripen_at_local=walking.ripen_at_local,
            )
        )
        for region in walking.regions:
            factor = walking.for_region(region)
            regional.append(
                RegionalWalking(
                    active.version,
                    region,
                    factor.energy_per_event_g,
                    _per_unit(factor.energy_per_unit_g),
                    factor.unit,
                )
            )
    return terms_params(terms, regional)


def _per_unit(value: float | None) -> Decimal | None:
    # the rules' floats as the decimals Python values with (Decimal(str(x)): 0.0165, not 0.01649…)
    return None if value is None else Decimal(str(value))


async def record_steps(
    pg: Pg,
    user_id: uuid.UUID,
    day: date,
    steps: int,
    source: str | None,
    registry: RulesRegistry,
    now: datetime,
) -> StepsState:
    """Keep the highest total reported for a local date; mint at once if the date is over."""
    row = await pg.fetch_one(
        RECORD_STEPS,
        user=user_id,
        day=day,
        steps=steps,
        source=source,
        now=now,
        **walking_terms(registry),
    )
    if row is None:
        raise Unauthorized("This login has ended; sign in again")
    rules = registry.get(row.version).rules
    if row.verdict == "not_begun":
        raise DateOutOfRange(f"{day} has not begun yet in {row.tz}")
    if row.verdict == "too_old":
        # A day's total is ingested as of the day's local start (so it counts on that day and
        # ripens the next morning): only days that began within ingest.max_age are accepted
        cutoff = now - rules.ingest.max_age
        oldest = local_date(cutoff, row.tz)
        if local_midnight(oldest, row.tz) < cutoff:
            oldest += timedelta(days=1)
        raise DateOutOfRange(f"steps for days before {oldest} are no longer accepted")
    if row.verdict == "no_walking":
        raise Unprocessable("These rules define no walking energy")
    if row.verdict == "implausible":
        most = rules.activities[WALKING].max_units_per_day
        raise Implausible(f"{steps} steps in a day is more than the {int(most or 0)} accepted")
    assert row.steps is not None
    return StepsState(day, row.steps, row.minted, row.energy_g)


async def mint_closed_days(
    session: AsyncSession, user: UserRef, registry: RulesRegistry, now: datetime
) -> int:
    """Mint this user's step days that have ended and are not minted yet (one statement)."""
    result = await session.execute(
        text(CLOSE_USER_DAYS.sql), {"user": user.id, "now": now, **walking_terms(registry)}
    )
    return int(result.scalar_one())


async def mint_due_step_days(
    session: AsyncSession, now: datetime, registry: RulesRegistry, batch: int = 500
) -> int:
    """Worker job: mint every user's ended, unminted step days (a batch at a time)."""
    result = await session.execute(
        text(CLOSE_DUE_DAYS.sql), {"now": now, "batch": batch, **walking_terms(registry)}
    )
    return int(result.scalar_one())


def user_ref(user_id: uuid.UUID, timezone: str, region: str | None) -> UserRef:
    return UserRef(user_id, timezone, region)
