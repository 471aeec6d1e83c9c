"""Operators' partner pages: the list, creating one (its secrets shown once), changing its name,
scopes, kinds and webhook URL, rotating its key."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from app.admin import audit
from app.console.forms import PostedForm, Problem, attempt, once_only, parse
from app.console.rendering import page, redirect
from app.console.routing import console_router
from app.console.session import ConsoleSession, Operator
from app.core.db import SessionDep
from app.core.deps import ClockDep, KeysDep, RegistryDep, SettingsDep
from app.core.errors import NotFound
from app.core.ids import parse_id
from app.partners import service
from app.partners.keys import forget_partner
from app.partners.schemas import PartnerCreate, PartnerPublic, PartnerUpdate, Scope

router = console_router()

FIELDS = ("name", "scopes", "webhook_url", "kinds")
# partner kinds arrive with their own issue; the form offers them once the API has them
KINDS_SUPPORTED = "kinds" in PartnerCreate.model_fields


async def _partners_page(
    request: Request,
    operator: ConsoleSession,
    db: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    *,
    status: int = 200,
    problem: Problem | None = None,
    values: dict[str, Any] | None = None,
    notice: str | None = None,
) -> Response:
    kinds = sorted(registry.at(clock.now()).rules.activities) if KINDS_SUPPORTED else []
    return await page(
        request,
        "partners.html",
        status=status,
        session=operator,
        title="Partners",
        partners=await service.list_partners(db),
        scopes=[s.value for s in Scope],
        kinds=kinds,
        kinds_supported=KINDS_SUPPORTED,
        problem=problem,
        values=values or {"scopes": ["orders"]},
        fields=FIELDS,
        notice=notice,
    )


@router.get("/console/partners")
async def partners(
    request: Request,
    operator: Operator,
    db: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    done: str | None = None,
) -> Response:
    notice = "Partner updated." if done == "updated" else None
    return await _partners_page(request, operator, db, registry, clock, notice=notice)


@router.post("/console/partners")
async def create_partner(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    keys: KeysDep,
    settings: SettingsDep,
    registry: RegistryDep,
    clock: ClockDep,
) -> Response:
    """``POST /admin/v1/partners`` from a form; the key and webhook secret are on this answer
    only (it is never cached, and nothing redirects to it)."""
    await once_only(request, form)
    values: dict[str, Any] = {
        "name": form.text("name"),
        "scopes": form.all("scopes"),
        "webhook_url": form.optional("webhook_url"),
    }
    if KINDS_SUPPORTED:
        values["kinds"] = form.all("kinds") or None
    payload = parse(PartnerCreate, values)
    now = clock.now()
    rules = registry.at(now).rules
    created = (
        payload
        if isinstance(payload, Problem)
        else await attempt(
            db, lambda: service.create_partner(db, keys, settings, payload, now, rules)
        )
    )
    if isinstance(created, Problem):
        shown = {**values, "webhook_url": values["webhook_url"] or ""}
        return await _partners_page(
            request,
            operator,
            db,
            registry,
            clock,
            status=created.status,
            problem=created,
            values=shown,
        )
    await audit.record(
        db,
        action="partner.created",
        target=f"partner:{created.id}",
        summary=f"{created.name!r} with scopes {', '.join(sorted(created.scopes))}",
        at=now,
        actor=operator.actor,
    )
    return await page(
        request,
        "partner_secrets.html",
        status=201,
        session=operator,
        title=f"Partner {created.name} created",
        partner=created,
        webhook_secret=created.webhook_secret,
        created=True,
    )


@router.get("/console/partners/{partner_id}/rotate-key")
async def confirm_rotation(
    request: Request, operator: Operator, db: SessionDep, partner_id: str
) -> Response:
    """Rotating breaks the partner's integration until it installs the new key: ask first."""
    wanted = parse_id(partner_id, "partner")
    partner = next((p for p in await service.list_partners(db) if p.id == wanted), None)
    if partner is None:
        raise NotFound("No such partner")
    return await page(
        request,
        "partner_rotate.html",
        session=operator,
        title=f"Rotate the key of {partner.name}",
        partner=partner,
    )


@router.post("/console/partners/{partner_id}/rotate-key")
async def rotate_key(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    clock: ClockDep,
    partner_id: str,
) -> Response:
    """A new API key; the old one (and every console session made with it) stops working."""
    await once_only(request, form)
    now = clock.now()
    rotated = await service.rotate_key(db, parse_id(partner_id, "partner"), now)
    forget_partner(rotated.id)  # as the API does: here at once, other processes on commit
    await audit.record(
        db,
        action="partner.key_rotated",
        target=f"partner:{partner_id}",
        summary="new API key issued from the console; the old one stopped working",
        at=now,
        actor=operator.actor,
    )
    return await page(
        request,
        "partner_secrets.html",
        session=operator,
        title=f"New key for {rotated.name}",
        partner=rotated,
        webhook_secret=None,
        created=False,
    )


async def _partner(db: SessionDep, partner_id: str) -> PartnerPublic:
    wanted = parse_id(partner_id, "partner")
    partner = next((p for p in await service.list_partners(db) if p.id == wanted), None)
    if partner is None:
        raise NotFound("No such partner")
    return partner


async def _edit_page(
    request: Request,
    operator: ConsoleSession,
    registry: RegistryDep,
    clock: ClockDep,
    partner: PartnerPublic,
    values: dict[str, Any],
    *,
    status: int = 200,
    problem: Problem | None = None,
) -> Response:
    return await page(
        request,
        "partner_edit.html",
        status=status,
        session=operator,
        title=f"Change {partner.name}",
        partner=partner,
        scopes=[s.value for s in Scope],
        kinds=sorted(registry.at(clock.now()).rules.activities),
        problem=problem,
        values=values,
        fields=FIELDS,
    )


@router.get("/console/partners/{partner_id}/edit")
async def edit_partner(
    request: Request,
    operator: Operator,
    db: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    partner_id: str,
) -> Response:
    partner = await _partner(db, partner_id)
    values = {
        "name": partner.name,
        "scopes": list(partner.scopes),
        "kinds": list(partner.kinds or []),
        "webhook_url": partner.webhook_url or "",
    }
    return await _edit_page(request, operator, registry, clock, partner, values)


@router.post("/console/partners/{partner_id}/edit")
async def update_partner(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    settings: SettingsDep,
    registry: RegistryDep,
    clock: ClockDep,
    partner_id: str,
) -> Response:
    """``PATCH /admin/v1/partners/{id}`` from a form: every field is sent (no kinds ticked means
    every kind whose rules trust partners; an empty webhook URL removes it)."""
    partner = await _partner(db, partner_id)
    values: dict[str, Any] = {
        "name": form.text("name"),
        "scopes": form.all("scopes"),
        "kinds": form.all("kinds") or None,
        "webhook_url": form.optional("webhook_url"),
    }
    payload = parse(PartnerUpdate, values)
    now = clock.now()
    rules = registry.at(now).rules
    result = (
        payload
        if isinstance(payload, Problem)
        else await attempt(
            db, lambda: service.update_partner(db, settings, partner.id, payload, now, rules)
        )
    )
    if isinstance(result, Problem):
        shown = {
            **values,
            "kinds": values["kinds"] or [],
            "webhook_url": values["webhook_url"] or "",
        }
        return await _edit_page(
            request, operator, registry, clock, partner, shown, status=result.status, problem=result
        )
    updated, changed = result
    forget_partner(updated.id)  # as the API does: here at once, other processes on commit
    if changed:
        await audit.record(
            db,
            action="partner.updated",
            target=f"partner:{updated.id}",
            summary=service.describe_update(updated, changed),
            at=now,
            actor=operator.actor,
        )
    return redirect("/console/partners?done=updated")
