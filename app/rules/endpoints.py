"""/admin/v1/rules: the published versions, validation and publishing (TOML bodies)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Path, Query, Request
from pydantic import AwareDatetime, BaseModel
from starlette.responses import Response

from app.admin import audit
from app.admin.dependencies import AdminDep
from app.core.db import SessionDep
from app.core.deps import ClockDep, RegistryDep
from app.core.errors import NotFound, UnsupportedMediaType
from app.rules import service
from app.rules.hot import announce
from app.rules.loader import validate_rules_text
from app.rules.models import RulesVersion
from app.rules.registry import load_registry

router = APIRouter(prefix="/admin/v1/rules", tags=["admin"], dependencies=[AdminDep])

TOML_TYPES = ("application/toml", "text/toml", "text/plain", "application/x-toml")
TOML_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/toml": {"schema": {"type": "string"}}},
    }
}


class VersionOut(BaseModel):
    version: int
    sha256: str
    label: str
    effective_from: datetime
    created_at: datetime
    source: str  # "file" (the configured rules file), "api" or "cli"


class RulesOverview(BaseModel):
    active: VersionOut
    versions: list[VersionOut]


class Issue(BaseModel):
    loc: str
    msg: str


class Validation(BaseModel):
    valid: bool
    errors: list[Issue]


class PublishedOut(BaseModel):
    version: int
    sha256: str
    effective_from: datetime
    created: bool


async def _toml(request: Request) -> str:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in TOML_TYPES:
        raise UnsupportedMediaType("Send the rules file as Content-Type: application/toml")
    try:
        return (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise service.InvalidRules([{"loc": "(file)", "msg": "is not UTF-8 text"}]) from None


def _out(v: RulesVersion) -> VersionOut:
    assert v.version is not None
    return VersionOut(
        version=v.version,
        sha256=v.sha256,
        label=v.label,
        effective_from=v.effective_from,
        created_at=v.created_at,
        source=v.source,
    )


@router.get("", response_model=RulesOverview)
async def list_versions(
    session: SessionDep, clock: ClockDep, registry: RegistryDep
) -> RulesOverview:
    """Every published version (oldest first) and the one in force now."""
    from sqlalchemy import select
    from sqlmodel import col

    rows = (
        (await session.execute(select(RulesVersion).order_by(col(RulesVersion.version))))
        .scalars()
        .all()
    )
    versions = [_out(v) for v in rows]
    active = registry.at(clock.now()).version
    return RulesOverview(active=next(v for v in versions if v.version == active), versions=versions)


@router.get(
    "/{version}", response_class=Response, responses={200: {"content": {"application/toml": {}}}}
)
async def get_version(
    version: Annotated[int, Path(ge=1, le=2_147_483_647)], session: SessionDep
) -> Response:
    """The exact text of a published version (what its sha256 is of)."""
    found = await session.get(RulesVersion, version)
    if found is None:
        raise NotFound("No such rules version")
    return Response(found.text, media_type="application/toml")


@router.post("/validate", response_model=Validation, openapi_extra=TOML_BODY)
async def validate(request: Request) -> Validation:
    """Check a rules file without publishing it."""
    issues = validate_rules_text(await _toml(request))
    return Validation(valid=not issues, errors=[Issue(loc=i.loc, msg=i.msg) for i in issues])


@router.post(
    "",
    status_code=201,
    response_model=PublishedOut,
    responses={
        200: {"model": PublishedOut, "description": "this text is already the latest version"}
    },
    openapi_extra=TOML_BODY,
)
async def publish(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    registry: RegistryDep,
    background: BackgroundTasks,
    effective_from: Annotated[AwareDatetime | None, Query(description="default: now")] = None,
    simulate: Annotated[bool, Query(description="refuse big simulated effects")] = False,
    force: Annotated[bool, Query(description="publish despite the simulation")] = False,
) -> Response:
    """Publish a rules file as a new immutable version. Every running process switches to it
    at ``effective_from`` without a restart. The latest version's own text changes nothing
    (200); an earlier version's text becomes a new version (a rollback)."""
    published = await service.publish_text(
        session,
        await _toml(request),
        effective_from=effective_from,
        now=clock.now(),
        registry=registry,
        simulate=simulate,
        force=force,
    )
    v = published.version
    assert v.version is not None
    if published.created:
        await audit.record(
            session,
            action="rules.published",
            target=f"rules:{v.version}",
            summary=f"{v.label!r} sha256 {v.sha256[:12]}, effective from "
            f"{v.effective_from.isoformat()}" + (" (guardrail overridden)" if force else ""),
            at=clock.now(),
        )
        # after the commit: reload here at once, then tell every other process
        background.add_task(_reload_and_announce, request, v.version)
    body = PublishedOut(
        version=v.version,
        sha256=v.sha256,
        effective_from=v.effective_from,
        created=published.created,
    )
    return Response(
        body.model_dump_json(),
        status_code=201 if published.created else 200,
        media_type="application/json",
    )


async def _reload_and_announce(request: Request, version: int) -> None:
    state = request.app.state
    async with state.sessionmaker() as session:
        fresh = await load_registry(session)
    state.rules_registry.replace(fresh.versions)
    await announce(state.redis, version)
