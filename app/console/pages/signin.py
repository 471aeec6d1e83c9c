"""Signing in (admin token or partner API key → session cookie) and out."""

from __future__ import annotations

import logging
import re

from fastapi import Request
from starlette.responses import Response

from app.admin import audit
from app.console.forms import FieldError, PostedForm, Problem
from app.console.rendering import page, redirect
from app.console.routing import console_router
from app.console.session import (
    CurrentSession,
    end_session,
    new_session,
    operator_fingerprint,
    partner_fingerprint,
    replace_session,
    signer,
)
from app.core.db import SessionDep
from app.core.deps import ClockDep, SettingsDep
from app.core.errors import RateLimited
from app.core.ratelimit import RateLimiter, client_address
from app.core.security import constant_time_equals, digest
from app.partners.repository import PartnersRepository

router = console_router()
logger = logging.getLogger("canopy.console")

HOME = {"operator": "/console/dashboard", "partner": "/console/portal/orders"}
_NAME = re.compile(r"^[\w .'@-]{1,40}$")


def _safe_next(target: str | None) -> str | None:
    """Only a console page of this site (never ``//elsewhere`` or ``/console/../``)."""
    if target and target.startswith("/console/") and "//" not in target and ".." not in target:
        return target
    return None


@router.get("/console")
async def home(session: CurrentSession) -> Response:
    return redirect(HOME.get(session.role, "/console/sign-in"), at_notice=False)


@router.get("/console/sign-in")
async def sign_in_form(
    request: Request, session: CurrentSession, next: str | None = None, signed_out: bool = False
) -> Response:
    if session.signed_in():
        return redirect(HOME[session.role], at_notice=False)
    return await page(
        request,
        "sign_in.html",
        title="Sign in",
        kind="operator",
        next=_safe_next(next),
        values={},
        problem=None,
        notice="You are signed out." if signed_out else None,
    )


@router.post("/console/sign-in")
async def sign_in(
    request: Request,
    form: PostedForm,
    db: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> Response:
    """Exchange the admin token or a partner key for a session. The secret is only read from
    the form body; it is never echoed back, put in a URL or logged."""
    kind = "partner" if form.text("kind") == "partner" else "operator"
    secret = form.text("secret").strip()
    name = (form.optional("name") or "")[:40]
    target = _safe_next(form.optional("next"))
    limiter: RateLimiter = request.app.state.rate_limiter
    problem: Problem | None = None
    now = clock.now()
    sign = signer(request)
    try:
        await limiter.hit("login", "console", client_address(request))
    except RateLimited as exc:
        problem = Problem.of(exc)
    if problem is None and name and not _NAME.match(name):
        problem = _field("name", "letters, digits, spaces and . ' @ - only (at most 40)")
    if problem is None and not secret:
        problem = _field("secret", "is required")
    if problem is None and kind == "operator":
        fingerprint = operator_fingerprint(sign, settings)
        if fingerprint is None:
            problem = Problem(
                404, "not_found", "The operator console is off: CANOPY_ADMIN_TOKEN is not set."
            )
        elif settings.admin_token is None or not constant_time_equals(
            secret, settings.admin_token.get_secret_value()
        ):
            problem = _field("secret", "This is not the admin token.", status=401)
        else:
            replace_session(
                request,
                new_session(now, "operator", operator=name or None, fingerprint=fingerprint),
            )
            await audit.record(
                db,
                action="console.signed_in",
                target="console",
                summary=f"operator {name!r} signed in" if name else "an operator signed in",
                at=now,
                actor=f"console:{name}" if name else "console",
            )
            return redirect(target or HOME["operator"], at_notice=False)
    if problem is None:
        partner = await PartnersRepository(db).by_key_hash(digest(secret))
        if partner is None:
            problem = _field("secret", "No partner has this API key.", status=401)
        else:
            replace_session(
                request,
                new_session(
                    now,
                    "partner",
                    partner_id=str(partner.id),
                    fingerprint=partner_fingerprint(sign, partner),
                ),
            )
            return redirect(target or HOME["partner"], at_notice=False)
    assert problem is not None
    logger.info("console sign-in refused", extra={"kind": kind, "code": problem.code})
    return await page(
        request,
        "sign_in.html",
        status=problem.status,
        title="Sign in",
        kind=kind,
        next=target,
        values={"name": name},  # never the secret
        problem=problem,
        notice=None,
    )


def _field(name: str, msg: str, status: int = 422) -> Problem:
    return Problem(status, "validation_error", msg, [FieldError(name, msg)])


@router.post("/console/sign-out")
async def sign_out(
    request: Request, form: PostedForm, session: CurrentSession, clock: ClockDep
) -> Response:
    now = clock.now()
    if session.signed_in():
        await end_session(request.app.state.redis, session, now)
    replace_session(request, new_session(now))
    return redirect("/console/sign-in?signed_out=1")
