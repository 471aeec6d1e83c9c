"""Daily step totals: recorded as they grow, minted once as a walking ball after the day ends.

A closed day is minted the moment anyone needs it (its owner's or a friend's forest is read, or a
total arrives for a day already over) and by the worker for everyone else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Unprocessable
from app.core.users import UserRef
from app.energy.ingest import ORIGIN_CLIENT, Incoming, ingest
from app.energy.periods import local_date, local_midnight
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


async def record_steps(
    session: AsyncSession,
    user: UserRef,
    day: date,
    steps: int,
    source: str | None,
    registry: RulesRegistry,
    now: datetime,
) -> StepsState:
    """Keep the highest total reported for a local date; mint at once if the date is over."""
    today = local_date(now, user.timezone)
    rules = registry.at(local_midnight(day, user.timezone)).rules
    if day > today:
        raise DateOutOfRange(f"{day} has not begun yet in {user.timezone}")
    # A day's total is ingested as of the day's local start (so it counts on that day and ripens
    # the next morning): accept only days that began within ingest.max_age, or ingestion would
    # refuse the total as too old and the day would be closed with no energy.
    cutoff = now - rules.ingest.max_age
    if local_midnight(day, user.timezone) < cutoff:
        oldest = local_date(cutoff, user.timezone)
        if local_midnight(oldest, user.timezone) < cutoff:
            oldest += timedelta(days=1)
        raise DateOutOfRange(f"steps for days before {oldest} are no longer accepted")
    walking = rules.activities.get(WALKING)
    if walking is None:
        raise Unprocessable("These rules define no walking energy")
    if walking.max_units_per_day is not None and steps > walking.max_units_per_day:
        raise Implausible(
            f"{steps} steps in a day is more than the {int(walking.max_units_per_day)} accepted"
        )
    row = (
        await session.execute(
            text(
                "INSERT INTO step_days AS s (user_id, day, steps, source, updated_at) "
                "VALUES (:user, :day, :steps, :source, :now) "
                "ON CONFLICT (user_id, day) DO UPDATE SET "
                "steps = GREATEST(s.steps, EXCLUDED.steps), "
                "source = CASE WHEN EXCLUDED.steps > s.steps THEN EXCLUDED.source "
                "ELSE s.source END, "
                "updated_at = CASE WHEN EXCLUDED.steps > s.steps THEN EXCLUDED.updated_at "
                "ELSE s.updated_at END "
                "RETURNING steps, minted_at IS NOT NULL, coalesce(energy_g, 0)"
            ),
            {"user": user.id, "day": day, "steps": steps, "source": source, "now": now},
        )
    ).one()
    if day < today and not row[1]:
        await mint_closed_days(session, user, registry, now)
        row = (
            await session.execute(
                text(
                    "SELECT steps, minted_at IS NOT NULL, coalesce(energy_g, 0) FROM step_days "
                    "WHERE user_id = :user AND day = :day"
                ),
                {"user": user.id, "day": day},
            )
        ).one()
    return StepsState(day, int(row[0]), bool(row[1]), int(row[2]))


async def _mint(
    session: AsyncSession,
    rows: list[tuple[UserRef, date, int]],
    registry: RulesRegistry,
    now: datetime,
) -> int:
    if not rows:
        return 0
    events = [
        (
            user,
            Incoming(
                external_id=day.isoformat(),
                kind=WALKING,
                occurred_at=local_midnight(day, user.timezone),
                quantity=Decimal(steps),
            ),
        )
        for user, day, steps in rows
    ]
    outcomes = await ingest(
        session,
        source=STEPS_SOURCE,
        origin=ORIGIN_CLIENT,
        events=events,
        registry=registry,
        now=now,
        check_window=False,
    )
    params: dict[str, list[Any]] = {
        "users": [],
        "days": [],
        "grams": [],
        "balls": [],
        "versions": [],
    }
    for (user, day, _), outcome in zip(rows, outcomes, strict=True):
        params["users"].append(user.id)
        params["days"].append(day)
        params["grams"].append(outcome.energy_g)
        params["balls"].append(outcome.ball_id)
        params["versions"].append(outcome.rules_version)
    await session.execute(
        text(
            "UPDATE step_days AS s SET minted_at = :now, energy_g = t.g, ball_id = t.b, "
            "rules_version = t.v FROM unnest(CAST(:users AS uuid[]), CAST(:days AS date[]), "
            "CAST(:grams AS bigint[]), CAST(:balls AS uuid[]), CAST(:versions AS int[])) "
            "AS t(u, d, g, b, v) WHERE s.user_id = t.u AND s.day = t.d"
        ),
        {**params, "now": now},
    )
    return len(rows)


async def mint_closed_days(
    session: AsyncSession, user: UserRef, registry: RulesRegistry, now: datetime
) -> int:
    """Mint this user's step days that have ended and are not minted yet."""
    found = await session.execute(
        text(
            "SELECT day, steps FROM step_days WHERE user_id = :user AND minted_at IS NULL "
            "AND day < :today ORDER BY day FOR UPDATE SKIP LOCKED"
        ),
        {"user": user.id, "today": local_date(now, user.timezone)},
    )
    return await _mint(session, [(user, r[0], r[1]) for r in found], registry, now)


async def mint_due_step_days(
    session: AsyncSession, now: datetime, registry: RulesRegistry, batch: int = 500
) -> int:
    """Worker job: mint every user's ended, unminted step days (a batch at a time)."""
    found = await session.execute(
        text(
            "SELECT s.user_id, u.timezone, u.region, s.day, s.steps FROM step_days s "
            "JOIN users u ON u.id = s.user_id "
            "WHERE s.minted_at IS NULL AND u.erased_at IS NULL "
            "AND s.day < (CAST(:now AS timestamptz) AT TIME ZONE u.timezone)::date "
            "ORDER BY s.day LIMIT :batch FOR UPDATE OF s SKIP LOCKED"
        ),
        {"now": now, "batch": batch},
    )
    rows = [(UserRef(r[0], r[1], r[2]), r[3], r[4]) for r in found]
    return await _mint(session, rows, registry, now)


def user_ref(user_id: uuid.UUID, timezone: str, region: str | None) -> UserRef:
    return UserRef(user_id, timezone, region)
