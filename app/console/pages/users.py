"""Operators' user pages: find a user by handle; profile, balance and ledger; props granted; the
data export as a download; erasure behind a typed confirmation (requests received by mail)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
from fastapi import BackgroundTasks, Request
from starlette.responses import Response

from app.accounts import privacy
from app.admin import audit
from app.console import queries
from app.console.forms import FieldError, PostedForm, Problem, once_only, parse
from app.console.rendering import page, redirect
from app.console.routing import console_router
from app.console.session import ConsoleSession, Operator
from app.core.db import SessionDep
from app.core.deps import ClockDep, KeysDep, RulesDep
from app.core.errors import NotFound
from app.core.ids import parse_id
from app.core.pagination import decode_cursor, encode_cursor
from app.game.leaderboards.service import forget_on_boards
from app.game.props import service as props
from app.game.schemas import PropGrantIn
from app.ledger import entries as ledger

router = console_router()

LEDGER_PAGE = 25
_HANDLE = re.compile(r"^[a-z0-9_]{1,32}$")
DONE = {
    "granted": "Props granted.",
}


@router.get("/console/users")
async def find_user(
    request: Request,
    operator: Operator,
    db: SessionDep,
    handle: str | None = None,
    erased: bool = False,
) -> Response:
    wanted = (handle or "").strip().lower().removeprefix("@")
    suggestions: list[str] = []
    if wanted and _HANDLE.match(wanted):
        found = await queries.user_by_handle(db, wanted)
        if found is not None:
            return redirect(f"/console/users/{found.id}", at_notice=False)
        suggestions = await queries.handles_like(db, wanted)
    return await page(
        request,
        "users.html",
        session=operator,
        title="Users",
        handle=handle or "",
        searched=bool(wanted),
        suggestions=suggestions,
        notice="The account is erased: its personal data is gone, its numbers stay in the "
        "ledger under an anonymous id."
        if erased
        else None,
    )


async def _user_page(
    request: Request,
    operator: ConsoleSession,
    db: SessionDep,
    rules: RulesDep,
    clock: ClockDep,
    user_id: uuid.UUID,
    *,
    cursor: str | None = None,
    status: int = 200,
    **context: Any,
) -> Response:
    profile = await queries.user_by_id(db, user_id)
    if profile is None:
        raise NotFound("No such user")
    rows = await ledger.user_entries(db, user_id, decode_cursor(cursor), LEDGER_PAGE)
    next_cursor = encode_cursor(rows[LEDGER_PAGE - 1].id) if len(rows) > LEDGER_PAGE else None
    defaults: dict[str, Any] = {"problem": None, "form": None, "values": {}, "notice": None}
    defaults.update(context)
    return await page(
        request,
        "user.html",
        status=status,
        session=operator,
        title=f"@{profile.handle}" if profile.handle else "Erased user",
        user=profile,
        entries=rows[:LEDGER_PAGE],
        next_cursor=next_cursor,
        props=await props.inventory(db, user_id, rules, clock.now()),
        prop_types=sorted(rules.rules.props),
        **defaults,
    )


@router.get("/console/users/{user_id}")
async def user_detail(
    request: Request,
    operator: Operator,
    db: SessionDep,
    rules: RulesDep,
    clock: ClockDep,
    user_id: str,
    cursor: str | None = None,
    done: str | None = None,
) -> Response:
    return await _user_page(
        request,
        operator,
        db,
        rules,
        clock,
        parse_id(user_id, "user"),
        cursor=cursor,
        notice=DONE.get(done or ""),
    )


@router.post("/console/users/{user_id}/export")
async def export_user(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    keys: KeysDep,
    clock: ClockDep,
    user_id: str,
) -> Response:
    """Everything held about the user (``GET /v1/me/export``'s document), as a download."""
    uid = parse_id(user_id, "user")
    profile = await queries.user_by_id(db, uid)
    if profile is None or profile.erased_at is not None:
        raise NotFound("No such user")
    now = clock.now()
    document = await privacy.export(db, keys, uid, now)
    await audit.record(
        db,
        action="user.exported",
        target=f"user:{uid}",
        summary="personal data exported from the console",
        at=now,
        actor=operator.actor,
    )
    return Response(
        orjson.dumps(document, option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="canopy-export-{profile.handle}.json"'
        },
    )


@router.post("/console/users/{user_id}/erase")
async def erase_user(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    rules: RulesDep,
    clock: ClockDep,
    background: BackgroundTasks,
    user_id: str,
) -> Response:
    """Erase a person (as ``DELETE /v1/me`` does), once the operator typed their handle."""
    uid = parse_id(user_id, "user")
    profile = await queries.user_by_id(db, uid)
    if profile is None or profile.erased_at is not None:
        raise NotFound("No such user")
    typed = form.text("confirm_handle").strip().lower().removeprefix("@")
    if not profile.handle or typed != profile.handle:
        problem = Problem(
            422,
            "confirmation_required",
            "Type the user's handle to confirm the erasure.",
            [FieldError("confirm_handle", f"type {profile.handle} exactly")],
        )
        return await _user_page(
            request, operator, db, rules, clock, uid, status=422, problem=problem, form="erase"
        )
    now = clock.now()
    grams = await privacy.erase(db, uid, now, rules.version)
    await audit.record(
        db,
        action="user.erased",
        target=f"user:{uid}",
        summary=f"personal data erased from the console; {grams} g in live balls expired",
        at=now,
        actor=operator.actor,
    )
    background.add_task(forget_on_boards, request.app.state.redis, uid)
    return redirect("/console/users?erased=1")


@router.post("/console/users/{user_id}/props")
async def grant_props(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    rules: RulesDep,
    clock: ClockDep,
    user_id: str,
) -> Response:
    """``POST /admin/v1/props/grant``: the same checks (a known type, a live user)."""
    await once_only(request, form)
    uid = parse_id(user_id, "user")
    values = {"user_id": str(uid), "type": form.text("type"), "count": form.text("count")}
    payload = parse(PropGrantIn, values)
    if not isinstance(payload, Problem) and payload.type not in rules.rules.props:
        payload = Problem(
            422,
            "validation_error",
            f"unknown prop type {payload.type!r}",
            [FieldError("type", f"unknown prop type {payload.type!r}")],
        )
    if isinstance(payload, Problem):
        return await _user_page(
            request,
            operator,
            db,
            rules,
            clock,
            uid,
            status=payload.status,
            problem=payload,
            form="props",
            values=values,
        )
    profile = await queries.user_by_id(db, uid)
    if profile is None or profile.erased_at is not None:
        raise NotFound("No such user")
    count = await props.add(db, uid, payload.type, payload.count)
    await audit.record(
        db,
        action="props.granted",
        target=f"user:{uid}",
        summary=f"{payload.count} x {payload.type} granted (now {count})",
        at=clock.now(),
        actor=operator.actor,
    )
    return redirect(f"/console/users/{uid}?done=granted")
