"""/v1/activities, /v1/steps, /v1/energy/ledger, partner activities, ledger check."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from app.accounts.dependencies import CurrentUser
from app.accounts.models import User
from app.admin.dependencies import AdminDep
from app.core.db import SessionDep
from app.core.deps import ClockDep, LimiterDep, RegistryDep
from app.core.errors import NotFound
from app.core.idempotency import IdempotencyDep
from app.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, split_page
from app.core.users import UserRef
from app.energy import steps
from app.energy.ingest import ORIGIN_CLIENT, ORIGIN_PARTNER, Incoming, Outcome, ingest
from app.energy.repository import EnergyRepository
from app.energy.schemas import (
    ActivityBatchIn,
    ActivityBatchResult,
    ActivityIn,
    ActivityResult,
    LedgerEntryOut,
    LedgerPage,
    PartnerActivityBatchIn,
    PartnerActivityIn,
    StepsIn,
    StepsResult,
)
from app.ledger import entries as ledger
from app.partners.dependencies import partner_with_scope
from app.partners.models import Partner
from app.partners.schemas import Scope

router = APIRouter(tags=["energy"])
partner_router = APIRouter(prefix="/partner/v1", tags=["partner"])
admin_router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[AdminDep])

ActivitiesPartner = Annotated[Partner, Depends(partner_with_scope(Scope.activities))]


def _ref(user: User) -> UserRef:
    return UserRef(user.id, user.timezone, user.region)


def _incoming(item: ActivityIn) -> Incoming:
    return Incoming(item.id, item.kind, item.occurred_at, item.quantity, item.attributes)


def _result(outcome: Outcome) -> ActivityResult:
    return ActivityResult(
        id=outcome.id,
        kind=outcome.kind,
        status=outcome.status,
        energy_g=outcome.energy_g,
        ball_id=outcome.ball_id,
        reason=outcome.reason,
        rules_version=outcome.rules_version,
    )


def _single_status(result: ActivityResult) -> int:
    # 201 when something was recorded; a duplicate or a rejection created nothing
    return 201 if result.status in ("minted", "capped") else 200


@router.post(
    "/v1/activities",
    status_code=201,
    response_model=ActivityResult,
    responses={200: {"model": ActivityResult, "description": "duplicate or rejected"}},
)
async def report_activity(
    item: ActivityIn,
    user: CurrentUser,
    session: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    limiter: LimiterDep,
    idem: IdempotencyDep,
) -> Response:
    """Report one activity. Same ``id`` again → ``duplicate`` with the original energy."""
    await limiter.hit("activities", f"user:{user.id}")

    async def produce() -> ActivityResult:
        return (await _user_ingest(session, user, [item], registry, clock.now()))[0]

    return await idem.run(owner=f"user:{user.id}", status_code=_single_status, produce=produce)


@router.post("/v1/activities/batch", response_model=ActivityBatchResult)
async def report_activities(
    batch: ActivityBatchIn,
    user: CurrentUser,
    session: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    limiter: LimiterDep,
    idem: IdempotencyDep,
) -> Response:
    """Report up to 500 activities; results in the same order."""
    await limiter.hit("activities", f"user:{user.id}")

    async def produce() -> ActivityBatchResult:
        results = await _user_ingest(session, user, batch.activities, registry, clock.now())
        return ActivityBatchResult(results=results)

    return await idem.run(owner=f"user:{user.id}", status_code=200, produce=produce)


async def _user_ingest(
    session: SessionDep,
    user: User,
    items: list[ActivityIn],
    registry: RegistryDep,
    now: dt.datetime,
) -> list[ActivityResult]:
    ref = _ref(user)
    outcomes = await ingest(
        session,
        source="client",
        origin=ORIGIN_CLIENT,
        events=[(ref, _incoming(item)) for item in items],
        registry=registry,
        now=now,
    )
    return [_result(o) for o in outcomes]


async def _partner_ingest(
    session: SessionDep,
    partner: Partner,
    items: list[PartnerActivityIn],
    registry: RegistryDep,
    now: dt.datetime,
) -> list[ActivityResult]:
    profiles = await EnergyRepository(session).user_profiles([i.user_id for i in items])
    known = [
        (UserRef(i.user_id, *profiles[i.user_id]), _incoming(i))
        for i in items
        if i.user_id in profiles
    ]
    outcomes = iter(
        await ingest(
            session,
            source=f"partner:{partner.id}",
            origin=ORIGIN_PARTNER,
            events=known,
            registry=registry,
            now=now,
        )
    )
    results = []
    for item in items:
        if item.user_id in profiles:
            results.append(_result(next(outcomes)))
        else:
            results.append(
                ActivityResult(
                    id=item.id,
                    kind=item.kind,
                    status="rejected",
                    energy_g=0,
                    ball_id=None,
                    reason="unknown_user",
                    rules_version=None,
                )
            )
    return results


@partner_router.post(
    "/activities",
    status_code=201,
    response_model=ActivityResult,
    responses={200: {"model": ActivityResult, "description": "duplicate or rejected"}},
)
async def partner_activity(
    item: PartnerActivityIn,
    partner: ActivitiesPartner,
    session: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    limiter: LimiterDep,
    idem: IdempotencyDep,
) -> Response:
    """A partner reports one activity for a user (source ``partner``)."""
    await limiter.hit("activities", f"partner:{partner.id}")

    async def produce() -> ActivityResult:
        result = (await _partner_ingest(session, partner, [item], registry, clock.now()))[0]
        if result.reason == "unknown_user":
            raise NotFound("No such user")
        return result

    return await idem.run(
        owner=f"partner:{partner.id}", status_code=_single_status, produce=produce
    )


@partner_router.post("/activities/batch", response_model=ActivityBatchResult)
async def partner_activities(
    batch: PartnerActivityBatchIn,
    partner: ActivitiesPartner,
    session: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    limiter: LimiterDep,
    idem: IdempotencyDep,
) -> Response:
    """Up to 500 activities for any users; unknown users are ``rejected`` (``unknown_user``)."""
    await limiter.hit("activities", f"partner:{partner.id}")

    async def produce() -> ActivityBatchResult:
        results = await _partner_ingest(session, partner, batch.activities, registry, clock.now())
        return ActivityBatchResult(results=results)

    return await idem.run(owner=f"partner:{partner.id}", status_code=200, produce=produce)


@router.put("/v1/steps/{day}", response_model=StepsResult)
async def put_steps(
    day: dt.date,
    payload: StepsIn,
    user: CurrentUser,
    session: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
) -> StepsResult:
    """The cumulative step total for a local date (YYYY-MM-DD). Lower totals are ignored."""
    state = await steps.record_steps(
        session, _ref(user), day, payload.steps, payload.source, registry, clock.now()
    )
    return StepsResult(
        date=state.day,
        steps=state.steps,
        status="minted" if state.minted else "recording",
        energy_g=state.energy_g,
    )


@router.get("/v1/energy/ledger", response_model=LedgerPage)
async def get_ledger(
    user: CurrentUser,
    session: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> LedgerPage:
    """Your balance entries, newest first, with the balance after each."""
    rows = await ledger.user_entries(session, user.id, decode_cursor(cursor), limit)
    page, next_cursor = split_page(rows, limit, lambda r: r.id)
    return LedgerPage(
        entries=[
            LedgerEntryOut(
                id=str(r.id),
                at=r.at,
                amount_g=r.amount_g,
                balance_after_g=r.balance_after_g,
                reason=r.reason,
                ref=r.ref,
                rules_version=r.rules_version,
            )
            for r in page
        ],
        next_cursor=next_cursor,
    )


@admin_router.get("/ledger/check")
async def ledger_check(session: SessionDep) -> dict[str, Any]:
    """Invariants: the ledger sums to zero, balances and balls equal their entries, no ball
    over-taken, nothing negative."""
    return await ledger.check(session)
