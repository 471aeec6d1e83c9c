"""/v1/activities, /v1/steps, /v1/forest, /v1/energy/ledger, partner activities, ledger check."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from starlette.responses import Response

from app.accounts.dependencies import CurrentPrincipal
from app.accounts.models import User
from app.admin.dependencies import AdminDep
from app.core.db import SessionDep
from app.core.deps import ClockDep, LimiterDep, RegistryDep
from app.core.errors import NotFound, Unauthorized
from app.core.idempotency import Idempotency, IdempotencyDep
from app.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, split_page
from app.core.responses import json_response
from app.core.sql import Pg, PgDep
from app.core.svg import SVG_HEADERS
from app.core.users import UserRef
from app.energy import carbon, steps
from app.energy.ingest import ORIGIN_CLIENT, ORIGIN_PARTNER, Incoming, ingest
from app.energy.repository import ActivityRow
from app.energy.schemas import (
    ActivityBatchIn,
    ActivityBatchResult,
    ActivityIn,
    ActivityResult,
    CarbonAccountOut,
    LedgerPage,
    PartnerActivityBatchIn,
    PartnerActivityIn,
    StepsIn,
    StepsResult,
)
from app.ledger import entries as ledger
from app.partners.dependencies import verified_partner_with_scope
from app.partners.keys import PartnerKey
from app.partners.schemas import Scope
from app.rules.registry import RulesRegistry

router = APIRouter(tags=["energy"])
partner_router = APIRouter(prefix="/partner/v1", tags=["partner"])
admin_router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[AdminDep])

ActivitiesPartner = Annotated[PartnerKey, Depends(verified_partner_with_scope(Scope.activities))]
JSON = "application/json"


def _ref(user: User) -> UserRef:
    return UserRef(user.id, user.timezone, user.region)


def _incoming(item: ActivityIn) -> Incoming:
    return Incoming(item.id, item.kind, item.occurred_at, item.quantity, item.attributes)


def _result(row: ActivityRow) -> dict[str, Any]:
    """An ActivityResult's JSON, straight from the statement's row."""
    if row.status is None:  # the user does not exist
        return {
            "id": row.id,
            "kind": row.kind,
            "status": "rejected",
            "energy_g": 0,
            "ball_id": None,
            "reason": "unknown_user",
            "rules_version": None,
        }
    return {
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "energy_g": row.energy_g,
        "ball_id": row.ball_id,
        "reason": row.reason,
        "rules_version": row.rules_version,
    }


def _single_status(row: ActivityRow) -> int:
    # 201 when something was recorded; a duplicate or a rejection created nothing
    return 201 if row.status in ("minted", "capped") else 200


Work = Callable[[], Awaitable[tuple[int, dict[str, Any]]]]


async def _respond(idem: Idempotency, owner: str, model: type[BaseModel], work: Work) -> Response:
    """Answer ``work``'s (status, body) as JSON built straight from rows. With an
    ``Idempotency-Key`` the stored-reply machinery runs around it (a cold path: it wants a model,
    and its record commits with the request's session while the work has already committed in
    its own statement — a retry after a failed commit then finds the events as duplicates)."""
    if idem.key is None:
        status, body = await work()
        return json_response(body, status)
    statuses: list[int] = []

    async def produce() -> BaseModel:
        status, body = await work()
        statuses.append(status)
        return model.model_validate(body)

    return await idem.run(owner=owner, status_code=lambda _: statuses[-1], produce=produce)


async def _user_ingest(
    pg: Pg, user_id: uuid.UUID, items: list[ActivityIn], registry: RulesRegistry, now: dt.datetime
) -> list[ActivityRow]:
    rows = await ingest(
        pg,
        source="client",
        origin=ORIGIN_CLIENT,
        events=[(user_id, _incoming(item)) for item in items],
        registry=registry,
        now=now,
    )
    if rows[0].status is None:  # the user row is gone (erased): the login is over
        raise Unauthorized("This login has ended; sign in again")
    return rows


async def _partner_ingest(
    pg: Pg,
    partner: PartnerKey,
    items: list[PartnerActivityIn],
    registry: RulesRegistry,
    now: dt.datetime,
) -> list[ActivityRow]:
    return await ingest(
        pg,
        source=f"partner:{partner.id}",
        origin=ORIGIN_PARTNER,
        events=[(item.user_id, _incoming(item)) for item in items],
        registry=registry,
        now=now,
        kinds=partner.kinds,
    )


@router.post(
    "/v1/activities",
    status_code=201,
    response_model=ActivityResult,
    responses={200: {"model": ActivityResult, "description": "duplicate or rejected"}},
)
async def report_activity(
    item: ActivityIn,
    principal: CurrentPrincipal,
    pg: PgDep,
    registry: RegistryDep,
    clock: ClockDep,
    limiter: LimiterDep,
    idem: IdempotencyDep,
) -> Response:
    """Report one activity. Same ``id`` again → ``duplicate`` with the original energy."""
    await limiter.hit("activities", f"user:{principal.id}")

    async def work() -> tuple[int, dict[str, Any]]:
        [row] = await _user_ingest(pg, principal.id, [item], registry, clock.now())
        return _single_status(row), _result(row)

    return await _respond(idem, f"user:{principal.id}", ActivityResult, work)


@router.post("/v1/activities/batch", response_model=ActivityBatchResult)
async def report_activities(
    batch: ActivityBatchIn,
    principal: CurrentPrincipal,
    pg: PgDep,
    registry: RegistryDep,
    clock: ClockDep,
    limiter: LimiterDep,
    idem: IdempotencyDep,
) -> Response:
    """Report up to 500 activities; results in the same order."""
    await limiter.hit("activities", f"user:{principal.id}")

    async def work() -> tuple[int, dict[str, Any]]:
        rows = await _user_ingest(pg, principal.id, batch.activities, registry, clock.now())
        return 200, {"results": [_result(r) for r in rows]}

    return await _respond(idem, f"user:{principal.id}", ActivityBatchResult, work)


@partner_router.post(
    "/activities",
    status_code=201,
    response_model=ActivityResult,
    responses={200: {"model": ActivityResult, "description": "duplicate or rejected"}},
)
async def partner_activity(
    item: PartnerActivityIn,
    partner: ActivitiesPartner,
    pg: PgDep,
    registry: RegistryDep,
    clock: ClockDep,
    limiter: LimiterDep,
    idem: IdempotencyDep,
) -> Response:
    """A partner reports one activity for a user (source ``partner``)."""
    await limiter.hit("activities", f"partner:{partner.id}")

    async def work() -> tuple[int, dict[str, Any]]:
        [row] = await _partner_ingest(pg, partner, [item], registry, clock.now())
        if row.status is None:
            raise NotFound("No such user")
        return _single_status(row), _result(row)

    return await _respond(idem, f"partner:{partner.id}", ActivityResult, work)


@partner_router.post("/activities/batch", response_model=ActivityBatchResult)
async def partner_activities(
    batch: PartnerActivityBatchIn,
    partner: ActivitiesPartner,
    pg: PgDep,
    registry: RegistryDep,
    clock: ClockDep,
    limiter: LimiterDep,
    idem: IdempotencyDep,
) -> Response:
    """Up to 500 activities for any users; unknown users are ``rejected`` (``unknown_user``)."""
    await limiter.hit("activities", f"partner:{partner.id}")

    async def work() -> tuple[int, dict[str, Any]]:
        rows = await _partner_ingest(pg, partner, batch.activities, registry, clock.now())
        return 200, {"results": [_result(r) for r in rows]}

    return await _respond(idem, f"partner:{partner.id}", ActivityBatchResult, work)


@router.put("/v1/steps/{day}", response_model=StepsResult)
async def put_steps(
    day: dt.date,
    payload: StepsIn,
    principal: CurrentPrincipal,
    pg: PgDep,
    registry: RegistryDep,
    clock: ClockDep,
) -> Response:
    """The cumulative step total for a local date (YYYY-MM-DD). Lower totals are ignored."""
    state = await steps.record_steps(
        pg, principal.id, day, payload.steps, payload.source, registry, clock.now()
    )
    body = {
        "date": state.day,
        "steps": state.steps,
        "status": "minted" if state.minted else "recording",
        "energy_g": state.energy_g,
    }
    return json_response(body)


@router.get("/v1/energy/ledger", response_model=LedgerPage)
async def get_ledger(
    principal: CurrentPrincipal,
    pg: PgDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Response:
    """Your balance entries, newest first, with the balance after each."""
    rows = await pg.fetch(
        ledger.USER_ENTRIES, user=principal.id, before=decode_cursor(cursor), limit=limit + 1
    )
    page, next_cursor = split_page(rows, limit, lambda r: r.id)
    body = {
        "entries": [
            {
                "id": str(r.id),
                "at": r.at,
                "amount_g": r.amount_g,
                "balance_after_g": r.balance_after_g,
                "reason": r.reason,
                "ref": r.ref,
                "rules_version": r.rules_version,
            }
            for r in page
        ],
        "next_cursor": next_cursor,
    }
    return json_response(body)


Year = Annotated[
    int | None,
    Query(ge=2000, le=2100, description="the calendar year (default: your current local year)"),
]


@router.get("/v1/me/carbon", response_model=CarbonAccountOut)
async def get_carbon_account(
    principal: CurrentPrincipal,
    pg: PgDep,
    registry: RegistryDep,
    clock: ClockDep,
    year: Year = None,
) -> Response:
    """What your activities avoided in a year, by kind and by month: every kind with its
    events, grams of CO2e and the methodology (``method``, ``source``) of the rules version
    that valued them."""
    found = await carbon.carbon_year(pg, registry, principal.id, year, clock.now())
    return json_response(found.account.model_dump(mode="json"))


@router.get(
    "/v1/me/carbon/statement",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}, "description": "the yearly statement"}},
)
async def get_carbon_statement(
    principal: CurrentPrincipal,
    pg: PgDep,
    registry: RegistryDep,
    clock: ClockDep,
    year: Year = None,
) -> Response:
    """Your printable yearly carbon statement, an SVG image."""
    now = clock.now()
    found = await carbon.carbon_year(pg, registry, principal.id, year, now)
    svg = carbon.render_statement(found, now)
    return Response(svg, media_type="image/svg+xml", headers=SVG_HEADERS)


@admin_router.get("/ledger/check")
async def ledger_check(session: SessionDep) -> dict[str, Any]:
    """Invariants: the ledger sums to zero, balances and balls equal their entries, no ball
    over-taken, nothing negative."""
    return await ledger.check(session)
