"""Operators' catalog: items with what is left of each season's budget, pausing and resuming
redemptions, changing a budget, adding an item."""

from __future__ import annotations

from typing import Any, get_args

from fastapi import Request
from starlette.responses import Response

from app.admin import audit
from app.console.forms import PostedForm, Problem, attempt, once_only, parse
from app.console.rendering import page, redirect
from app.console.routing import console_router
from app.console.session import ConsoleSession, Operator
from app.core.db import SessionDep
from app.core.deps import ClockDep
from app.core.ids import parse_id
from app.partners import service as partners
from app.planting import catalog
from app.planting.repository import PlantingRepository
from app.planting.schemas import CatalogCreate, CatalogPatch, ItemKind, ItemStatus

router = console_router()

FIELDS = (
    "kind",
    "name",
    "species",
    "cost_g",
    "unit",
    "region",
    "partner_id",
    "budget",
    "status",
    "season",
)
DONE = {
    "paused": "Paused: nobody can redeem it until it is resumed.",
    "resumed": "Resumed: it can be redeemed again.",
    "budget": "Budget changed.",
    "created": "Item added to the catalog.",
}


async def _catalog_page(
    request: Request,
    operator: ConsoleSession,
    db: SessionDep,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    defaults: dict[str, Any] = {
        "problem": None,
        "values": {"kind": "tree", "status": "available"},
        "notice": None,
        "budget_problem": None,
        "budget_item": None,
    }
    defaults.update(context)
    items = [catalog.item_admin_out(r) for r in await PlantingRepository(db).items()]
    return await page(
        request,
        "catalog.html",
        status=status,
        session=operator,
        title="Catalog",
        items=items,
        partner_options=[(str(p.id), p.name) for p in await partners.list_partners(db)],
        kinds=get_args(ItemKind),
        statuses=get_args(ItemStatus),
        fields=FIELDS,
        **defaults,
    )


@router.get("/console/catalog")
async def catalog_page(
    request: Request, operator: Operator, db: SessionDep, done: str | None = None
) -> Response:
    return await _catalog_page(request, operator, db, notice=DONE.get(done or ""))


async def _update(
    db: SessionDep, operator: ConsoleSession, item_id: str, patch: CatalogPatch, now: Any
) -> Any:
    return await attempt(
        db,
        lambda: catalog.update_item(db, parse_id(item_id, "catalog item"), patch, now),
        code_fields={"budget_below_taken": "budget"},
    )


@router.post("/console/catalog/{item_id}/status")
async def set_status(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    clock: ClockDep,
    item_id: str,
) -> Response:
    """Pause (``closed``) or resume (``available``) redemptions of an item."""
    resume = form.text("to") == "available"
    now = clock.now()
    item = await catalog.update_item(
        db,
        parse_id(item_id, "catalog item"),
        CatalogPatch(status="available" if resume else "closed"),
        now,
    )
    await audit.record(
        db,
        action="catalog.resumed" if resume else "catalog.paused",
        target=f"catalog:{item.id}",
        summary=f"{item.name!r} {'available again' if resume else 'closed to redemptions'}",
        at=now,
        actor=operator.actor,
    )
    return redirect(f"/console/catalog?done={'resumed' if resume else 'paused'}")


@router.post("/console/catalog/{item_id}/budget")
async def set_budget(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    clock: ClockDep,
    item_id: str,
) -> Response:
    now = clock.now()
    patch = parse(CatalogPatch, {"budget": form.text("budget") or None})
    result = (
        patch if isinstance(patch, Problem) else await _update(db, operator, item_id, patch, now)
    )
    if isinstance(result, Problem):
        return await _catalog_page(
            request,
            operator,
            db,
            status=result.status,
            budget_problem=result,
            budget_item=item_id,
        )
    await audit.record(
        db,
        action="catalog.budget_changed",
        target=f"catalog:{result.id}",
        summary=f"{result.name!r} budget {result.budget} ({result.taken} taken)",
        at=now,
        actor=operator.actor,
    )
    return redirect("/console/catalog?done=budget")


@router.post("/console/catalog")
async def create_item(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    clock: ClockDep,
) -> Response:
    """``POST /admin/v1/catalog`` from a form."""
    await once_only(request, form)
    values: dict[str, Any] = {name: form.optional(name) for name in FIELDS}
    payload = parse(CatalogCreate, {k: v for k, v in values.items() if v is not None})
    now = clock.now()
    created = (
        payload
        if isinstance(payload, Problem)
        else await attempt(db, lambda: catalog.create_item(db, payload, now))
    )
    if isinstance(created, Problem):
        return await _catalog_page(
            request,
            operator,
            db,
            status=created.status,
            problem=created,
            values={k: v or "" for k, v in values.items()},
        )
    await audit.record(
        db,
        action="catalog.created",
        target=f"catalog:{created.id}",
        summary=f"{created.kind} {created.name!r} at {created.cost_g} g, budget {created.budget}",
        at=now,
        actor=operator.actor,
    )
    return redirect("/console/catalog?done=created")
