"""Designers' pages: the published rules versions, a version's text, the difference between two
in designers' words, and a draft — validated, simulated against the rules in force, published
(with the simulator's guardrail, and a forced publish behind a second confirmation)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import BackgroundTasks, Request
from starlette.responses import Response

from app.admin import audit
from app.console import queries
from app.console.forms import FieldError, Posted, PostedForm, Problem, attempt, parse
from app.console.rendering import page, redirect
from app.console.routing import console_router
from app.console.session import ConsoleSession, Operator
from app.console.simulation import SimulationIn, compare
from app.core.db import SessionDep
from app.core.deps import ClockDep, RegistryDep
from app.core.errors import NotFound
from app.rules import service
from app.rules.diff import describe_changes
from app.rules.hot import announce
from app.rules.loader import LoadedRules, parse_rules_text, rules_sha256, validate_rules_text
from app.rules.registry import RulesRegistry, load_registry

router = console_router()

PUBLISHED = {
    "passed": "Version {v} is published. The simulator's guardrail found no persona whose days "
    "to the first saxaul move by more than 20 %. Every running process switches to it at its "
    "effective time.",
    "overridden": "Version {v} is published despite the simulator's verdict (recorded in the "
    "audit log). Every running process switches to it at its effective time.",
    "off": "Version {v} is published without a simulation. Every running process switches to "
    "it at its effective time.",
    "known": "This text is already the latest version ({v}): nothing changed.",
}


@dataclass(frozen=True)
class VersionView:
    version: int
    label: str
    sha256: str
    effective_from: datetime
    created_at: datetime
    source: str
    state: str  # in force, scheduled, superseded


def _versions(
    rows: list[queries.VersionRow], registry: RulesRegistry, now: datetime
) -> list[VersionView]:
    active = registry.at(now).version
    return [
        VersionView(
            r.version,
            r.label,
            r.sha256,
            r.effective_from,
            r.created_at,
            r.source,
            "in force"
            if r.version == active
            else ("scheduled" if r.effective_from > now else "superseded"),
        )
        for r in rows
    ]


async def _active(db: SessionDep, registry: RulesRegistry, now: datetime) -> LoadedRules:
    current = registry.at(now)
    text = await queries.rules_text(db, current.version) or ""
    return LoadedRules(rules=current.rules, text=text, sha256=current.sha256)


async def _rules_page(
    request: Request,
    operator: ConsoleSession,
    db: SessionDep,
    registry: RulesRegistry,
    now: datetime,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    versions = _versions(await queries.rules_versions(db), registry, now)
    active = await _active(db, registry, now)
    defaults: dict[str, Any] = {
        "draft": active.text,
        "issues": None,
        "changes": None,
        "simulation": None,
        "sim": SimulationIn(),
        "sim_problem": None,
        "problem": None,
        "refused": None,
        "effective_from": "",
        "notice": None,
    }
    defaults.update(context)
    return await page(
        request,
        "rules.html",
        status=status,
        session=operator,
        title="Rules",
        versions=versions,
        active_version=registry.at(now).version,
        **defaults,
    )


@router.get("/console/rules")
async def rules_home(
    request: Request,
    operator: Operator,
    db: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    published: int | None = None,
    guardrail: str | None = None,
) -> Response:
    notice = None
    if published:
        notice = PUBLISHED.get(guardrail or "off", PUBLISHED["off"]).format(v=published)
    return await _rules_page(request, operator, db, registry, clock.now(), notice=notice)


@router.get("/console/rules/diff")
async def rules_diff(
    request: Request,
    operator: Operator,
    db: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    old: int,
    new: int,
) -> Response:
    """What changes from version ``old`` to ``new`` (``canopy rules diff``)."""
    texts = [await queries.rules_text(db, v) for v in (old, new)]
    if texts[0] is None or texts[1] is None:
        raise NotFound("No such rules version")
    lines = describe_changes(parse_rules_text(texts[0]), parse_rules_text(texts[1]))
    versions = _versions(await queries.rules_versions(db), registry, clock.now())
    return await page(
        request,
        "rules_diff.html",
        session=operator,
        title=f"Rules {old} → {new}",
        old=old,
        new=new,
        lines=lines,
        versions=versions,
    )


@router.get("/console/rules/{version}")
async def rules_version(
    request: Request,
    operator: Operator,
    db: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    version: int,
) -> Response:
    text = await queries.rules_text(db, version)
    if text is None:
        raise NotFound("No such rules version")
    versions = _versions(await queries.rules_versions(db), registry, clock.now())
    shown = next(v for v in versions if v.version == version)
    return await page(
        request,
        "rules_version.html",
        session=operator,
        title=f"Rules version {version}",
        shown=shown,
        text=text,
        versions=versions,
    )


async def _draft(form: Posted) -> str | Problem:
    """The draft: an uploaded file if one was chosen, else the text area."""
    uploaded = await form.upload("draft_file")
    if uploaded is None:
        return form.text("draft").replace("\r\n", "\n")
    try:
        return uploaded.decode("utf-8")
    except UnicodeDecodeError:
        return Problem(
            422,
            "invalid_rules",
            "The file is not UTF-8 text",
            [FieldError("draft_file", "is not UTF-8 text")],
        )


def _sim_values(form: Posted) -> dict[str, str]:
    return {k: form.text(k) for k in ("players", "days", "seed") if form.text(k)}


@router.post("/console/rules/validate")
async def validate_draft(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
) -> Response:
    """Every problem by key path; for a valid draft, what it changes."""
    now = clock.now()
    draft = await _draft(form)
    if isinstance(draft, Problem):
        return await _rules_page(request, operator, db, registry, now, status=422, problem=draft)
    issues = validate_rules_text(draft)
    changes = None
    if not issues:
        changes = describe_changes(registry.at(now).rules, parse_rules_text(draft))
    return await _rules_page(
        request,
        operator,
        db,
        registry,
        now,
        status=422 if issues else 200,
        draft=draft,
        issues=issues,
        changes=changes,
        effective_from=form.text("effective_from"),
    )


@router.post("/console/rules/simulate")
async def simulate_draft(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
) -> Response:
    """The draft and the rules in force, played by the same simulated players."""
    now = clock.now()
    draft = await _draft(form)
    if isinstance(draft, Problem):
        return await _rules_page(request, operator, db, registry, now, status=422, problem=draft)
    issues = validate_rules_text(draft)
    sim = parse(SimulationIn, _sim_values(form))
    context: dict[str, Any] = {"draft": draft, "effective_from": form.text("effective_from")}
    if issues:
        return await _rules_page(
            request, operator, db, registry, now, status=422, issues=issues, **context
        )
    if isinstance(sim, Problem):
        return await _rules_page(
            request, operator, db, registry, now, status=422, sim_problem=sim, **context
        )
    active = await _active(db, registry, now)
    loaded = LoadedRules(parse_rules_text(draft), draft, rules_sha256(draft))
    current = registry.at(now)
    names = [
        f"in force: v{current.version} {current.rules.version}",
        f"draft: {loaded.rules.version} ({loaded.sha256[:8]})",
    ]
    simulation = await compare(active, loaded, sim, names)
    return await _rules_page(
        request,
        operator,
        db,
        registry,
        now,
        sim=sim,
        simulation=simulation,
        changes=describe_changes(current.rules, loaded.rules),
        **context,
    )


def _effective_from(form: Posted) -> datetime | Problem | None:
    raw = form.optional("effective_from")
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return Problem(
            422,
            "validation_error",
            "effective_from is not a date and time",
            [FieldError("effective_from", "is not a date and time (YYYY-MM-DDTHH:MM, UTC)")],
        )
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@router.post("/console/rules/publish")
async def publish_draft(
    request: Request,
    operator: Operator,
    form: PostedForm,
    db: SessionDep,
    registry: RegistryDep,
    clock: ClockDep,
    background: BackgroundTasks,
) -> Response:
    """Publish through the same service as ``POST /admin/v1/rules``. With the guardrail on, a
    change the simulator finds too big is refused; publishing it anyway takes a second,
    explicit confirmation."""
    now = clock.now()
    draft = await _draft(form)
    if isinstance(draft, Problem):
        return await _rules_page(request, operator, db, registry, now, status=422, problem=draft)
    context: dict[str, Any] = {"draft": draft, "effective_from": form.text("effective_from")}
    when = _effective_from(form)
    if isinstance(when, Problem):
        return await _rules_page(
            request, operator, db, registry, now, status=422, problem=when, **context
        )
    guardrail = form.checked("guardrail")
    force = form.checked("force") and form.checked("confirm_force")
    if form.checked("force") and not force:
        problem = Problem(
            422,
            "confirmation_required",
            "Tick the confirmation to publish despite the simulator's verdict.",
            [FieldError("confirm_force", "is required to publish anyway")],
        )
        return await _rules_page(
            request,
            operator,
            db,
            registry,
            now,
            status=422,
            problem=problem,
            refused=form.all("reason"),
            **context,
        )
    published = await attempt(
        db,
        lambda: service.publish_text(
            db,
            draft,
            effective_from=when,
            now=now,
            registry=registry,
            simulate=guardrail or force,
            force=force,
        ),
        code_fields={"effective_from_in_past": "effective_from"},
    )
    if isinstance(published, Problem):
        if published.code == "guardrail_refused":
            return await _rules_page(
                request,
                operator,
                db,
                registry,
                now,
                status=422,
                refused=_reasons(published),
                **context,
            )
        issues = None
        if published.code == "invalid_rules":
            issues = [{"loc": e.field, "msg": e.msg} for e in published.errors]
        return await _rules_page(
            request,
            operator,
            db,
            registry,
            now,
            status=published.status,
            problem=published,
            issues=issues,
            **context,
        )
    version = published.version
    assert version.version is not None
    if published.created:
        await audit.record(
            db,
            action="rules.published",
            target=f"rules:{version.version}",
            summary=f"{version.label!r} sha256 {version.sha256[:12]}, effective from "
            f"{version.effective_from.isoformat()}"
            + (" (guardrail overridden)" if force else "")
            + (" (guardrail passed)" if guardrail and not force else ""),
            at=now,
            actor=operator.actor,
        )
        background.add_task(_reload_and_announce, request, version.version)
    verdict = "overridden" if force else ("passed" if guardrail else "off")
    if not published.created:
        verdict = "known"
    return redirect(f"/console/rules?published={version.version}&guardrail={verdict}")


def _reasons(problem: Problem) -> list[str]:
    return [str(r) for r in problem.extra.get("reasons", [])]


async def _reload_and_announce(request: Request, version: int) -> None:
    """After the commit, as the API does: reload here at once, then tell every other process."""
    state = request.app.state
    async with state.sessionmaker() as session:
        fresh = await load_registry(session)
    state.rules_registry.replace(fresh.versions)
    await announce(state.redis, version)
