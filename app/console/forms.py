"""Forms: the posted fields (after the CSRF check), and what went wrong with them in the API's own
words — a problem's ``detail`` and its ``errors`` — placed next to the field each one names."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile

from app.console.session import CSRF_FIELD, CsrfRefused, csrf_ok, read_session
from app.core.db import SessionDep
from app.core.errors import CanopyError, Conflict

logger = logging.getLogger("canopy.console")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class FieldError:
    field: str  # the dotted path inside the request body ("location.lat"), "" for none
    msg: str


def _field_of(loc: Any) -> str:
    parts = loc if isinstance(loc, list | tuple) else [loc]
    if parts and parts[0] in ("body", "query", "path"):
        parts = parts[1:]
    return ".".join(str(p) for p in parts)


@dataclass
class Problem:
    """What the API would have answered (problem+json), for the page to show."""

    status: int
    code: str
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # the problem's other members

    @classmethod
    def of(cls, exc: CanopyError, code_fields: Mapping[str, str] | None = None) -> Problem:
        errors = [
            FieldError(_field_of(e.get("loc", [])), str(e.get("msg", "")))
            for e in exc.extra.get("errors", [])
            if isinstance(e, dict)
        ]
        named = (code_fields or {}).get(exc.code)
        if named and not errors:
            errors = [FieldError(named, exc.detail)]
        extra = {k: v for k, v in exc.extra.items() if k != "errors"}
        return cls(exc.status, exc.code, exc.detail, errors, extra)

    @classmethod
    def of_validation(cls, exc: ValidationError) -> Problem:
        errors = [FieldError(_field_of(list(e["loc"])), e["msg"]) for e in exc.errors()]
        detail = "; ".join(f"{e.field or 'form'}: {e.msg}" for e in errors[:5])
        return cls(422, "validation_error", detail, errors)

    def messages(self, name: str) -> list[str]:
        """The messages about field ``name`` (or anything inside it: ``evidence_urls.2``)."""
        return [e.msg for e in self.errors if e.field == name or e.field.startswith(name + ".")]

    def unplaced(self, *names: str) -> list[FieldError]:
        """Errors that no field of the form shows."""
        return [
            e
            for e in self.errors
            if not any(e.field == n or e.field.startswith(n + ".") for n in names)
        ]


class Posted:
    """A submitted form whose CSRF token checked out."""

    def __init__(self, data: FormData) -> None:
        self.data = data

    def text(self, name: str, default: str = "") -> str:
        value = self.data.get(name)
        return value if isinstance(value, str) else default

    def optional(self, name: str) -> str | None:
        """The field's text, or None when it was left empty."""
        value = self.text(name).strip()
        return value or None

    def all(self, name: str) -> list[str]:
        return [v for v in self.data.getlist(name) if isinstance(v, str)]

    def checked(self, name: str) -> bool:
        return self.text(name) in ("on", "true", "1", "yes")

    async def upload(self, name: str) -> bytes | None:
        value = self.data.get(name)
        if isinstance(value, UploadFile) and value.filename:
            return await value.read()
        return None

    def values(self) -> dict[str, str]:
        """Every text field but the CSRF token, to fill the form in again."""
        return {k: v for k, v in self.data.multi_items() if isinstance(v, str) and k != CSRF_FIELD}


ONCE_FIELD = "once"
_ONCE_KEY = "canopy:console:once:"
_ONCE_TTL = 24 * 3600


def once_token() -> str:
    """A fresh token for a form that must not act twice (a reload re-posting it)."""
    return secrets.token_urlsafe(16)


class AlreadySubmitted(Conflict):
    code, title = "already_submitted", "This form was already sent"


async def once_only(request: Request, form: Posted) -> None:
    """Refuse a second submission of the same form (409 page: nothing happens again)."""
    if not await first_submission(request, form):
        raise AlreadySubmitted(
            "This form was already sent and acted on; reloading the page does not send it "
            "again. Go back to the list to see the result."
        )


async def first_submission(request: Request, form: Posted) -> bool:
    """True the first time this form (its ``once`` token) is submitted. Without a token, or
    with Redis unreachable, the form is let through: the services' own checks still apply."""
    token = form.text(ONCE_FIELD)
    if not token:
        return True
    try:
        fresh = await request.app.state.redis.set(
            _ONCE_KEY + token[:64], b"1", nx=True, ex=_ONCE_TTL
        )
    except Exception:
        logger.warning("console form guard skipped: redis unavailable")
        return True
    return bool(fresh)


async def posted_form(request: Request, db: SessionDep) -> Posted:
    """The form, refused (403) unless it carries this session's CSRF token."""
    session = await read_session(request, db)
    data = await request.form()
    if not csrf_ok(request, session, data.get(CSRF_FIELD)):
        raise CsrfRefused("The form is missing its security token or it expired; reload the page")
    return Posted(data)


PostedForm = Annotated[Posted, Depends(posted_form)]


def parse(model: type[M], payload: dict[str, Any]) -> M | Problem:
    """``payload`` as the API would read it, or the API's 422."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        return Problem.of_validation(exc)


async def attempt(
    db: AsyncSession,
    action: Callable[[], Awaitable[T]],
    code_fields: Mapping[str, str] | None = None,
) -> T | Problem:
    """Run a service call in a savepoint: its result, or the problem the API would answer, with
    whatever it wrote undone (the page then shows the form again)."""
    try:
        async with db.begin_nested():
            return await action()
    except CanopyError as exc:
        return Problem.of(exc, code_fields)
    except ValidationError as exc:
        return Problem.of_validation(exc)
