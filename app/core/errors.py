"""Domain errors and their one translation into ``application/problem+json`` (RFC 9457).

Services raise subclasses of :class:`CanopyError`; handlers never build error responses by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, ClassVar

import asyncpg
import orjson
import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

logger = logging.getLogger("canopy.errors")

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://canopy.dev/problems/"


class CanopyError(Exception):
    """An error the API reports to its caller. Carries its HTTP status and machine ``code``."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"
    # True for the rare error whose side effects must still be committed (a security revocation)
    keep_changes: ClassVar[bool] = False

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(self.detail)

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(CanopyError):
    status, code, title = 400, "bad_request", "Bad request"


class InvalidJSON(CanopyError):
    status, code, title = 400, "invalid_json", "The request body is not valid JSON"


class Unauthorized(CanopyError):
    status, code, title = 401, "unauthorized", "Missing or invalid credentials"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(CanopyError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(CanopyError):
    status, code, title = 404, "not_found", "Not found"


class MethodNotAllowed(CanopyError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"


class Conflict(CanopyError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(CanopyError):
    status, code, title = 413, "payload_too_large", "The request body is too large"


class UnsupportedMediaType(CanopyError):
    status, code, title = 415, "unsupported_media_type", "Unsupported content type"


class ValidationFailed(CanopyError):
    """422 with an ``errors`` list of ``{loc, msg}``; raised by services for semantic checks."""

    status, code, title = 422, "validation_error", "The request is not valid"

    def __init__(self, errors: Sequence[dict[str, Any]], detail: str | None = None) -> None:
        super().__init__(detail, errors=list(errors))


class Unprocessable(CanopyError):
    """422 for a well-formed request the rules refuse (``implausible``, ``over_reported`` ...)."""

    status, code, title = 422, "unprocessable", "The request cannot be processed"


class RateLimited(CanopyError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        self.retry_after = max(1, retry_after)
        super().__init__(detail or f"Too many requests; retry in {self.retry_after} s")

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


#: what a 503 ``unavailable`` tells the client to wait before retrying
RETRY_AFTER_SECONDS = 1


class ServiceUnavailable(CanopyError):
    """503 with ``Retry-After``: a dependency (PostgreSQL) is briefly unreachable, or a
    transient conflict outlasted its retries. Nothing was changed; retrying (with the same
    ``Idempotency-Key``) is safe."""

    status, code, title = 503, "unavailable", "Service unavailable"

    def __init__(self, detail: str | None = None, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        self.retry_after = max(1, retry_after)
        super().__init__(detail)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


# --- transient failures of PostgreSQL and Redis ----------------------------------------------

# SQLSTATEs (and classes) that mean "the server is going away, starting, overloaded, or the
# statement lost a race it may win next time" — never "your request is wrong"
_TRANSIENT_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown: the backend was terminated (pg_terminate_backend, shutdown)
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: starting up or shutting down
        "57014",  # query_canceled (statement_timeout)
        "53300",  # too_many_connections
        "40P01",  # deadlock_detected, after the hot path's bounded retries
        "40001",  # serialization_failure, likewise
    }
)
_TRANSIENT_SQLSTATE_CLASSES = ("08",)  # connection_exception and its subclasses


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: SQLAlchemy's ``orig``, ``__cause__``, ``__context__``."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 16:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        orig = getattr(e, "orig", None)
        todo += [orig if isinstance(orig, BaseException) else None, e.__cause__, e.__context__]
    return seen


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says PostgreSQL or Redis is (briefly) unreachable, not that the
    request or the code is wrong: a lost or refused connection, a terminated backend, a server
    starting or stopping, a full pool, a deadlock or serialization failure that outlasted its
    retries."""
    for e in _causes(exc):
        if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, sqlalchemy.exc.TimeoutError | sqlalchemy.exc.DisconnectionError):
            return True  # no pooled connection within pool_timeout; a dead one at checkout
        if isinstance(e, asyncpg.PostgresConnectionError):  # includes ConnectionDoesNotExist
            return True
        if isinstance(e, asyncpg.InterfaceError) and "closed" in str(e):
            return True  # "connection is closed", "pool is closed"
        if isinstance(e, asyncpg.InternalClientError) and "another operation" in str(e):
            return True  # the server ended the connection while it was idle (a terminated
            # backend's last message put its protocol mid-error) and it was used before the
            # close was seen
        state = getattr(e, "sqlstate", None)
        if isinstance(state, str) and (
            state in _TRANSIENT_SQLSTATES or state.startswith(_TRANSIENT_SQLSTATE_CLASSES)
        ):
            return True
        if isinstance(e, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
            return True
        if isinstance(e, OSError) and (
            isinstance(e, ConnectionError | TimeoutError) or _raised_by_a_client(e)
        ):
            return True  # refused, reset, broken pipe, a unix socket gone, a connect timeout
    return False


_CLIENTS = ("asyncpg", "redis", "sqlalchemy")


def _raised_by_a_client(exc: BaseException) -> bool:
    """Raised from inside the PostgreSQL or Redis client (connecting, reading, writing) — not,
    say, a file the code failed to open, which is a bug or a misconfiguration."""
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith(_CLIENTS):
            return True
        tb = tb.tb_next
    return False


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail or title,
        "code": code,
    }
    body.update(extra)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def _loc(loc: Sequence[Any]) -> list[str | int]:
    return [p if isinstance(p, int) else str(p) for p in loc]


async def _canopy_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CanopyError)
    return problem_response(
        exc.status, exc.code, exc.title, exc.detail, headers=exc.headers(), **exc.extra
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return problem_response(
            400, InvalidJSON.code, InvalidJSON.title, "The request body could not be parsed as JSON"
        )
    return problem_response(
        422,
        ValidationFailed.code,
        ValidationFailed.title,
        "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5]),
        errors=[{"loc": _loc(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors],
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, CanopyError):  # FastAPI wraps errors raised while reading a body
        return await _canopy_error(request, exc.__cause__)
    codes = {
        404: NotFound,
        405: MethodNotAllowed,
        401: Unauthorized,
        403: Forbidden,
        413: PayloadTooLarge,
    }
    cls = codes.get(exc.status_code)
    if cls is not None:
        err = cls(exc.detail if isinstance(exc.detail, str) and exc.status_code != 404 else None)
        headers = dict(exc.headers or {}) | err.headers()
        return problem_response(err.status, err.code, err.title, err.detail, headers=headers)
    try:
        title = HTTPStatus(exc.status_code).phrase
    except ValueError:
        title = "Error"
    code = title.lower().replace(" ", "_").replace("-", "_")
    return problem_response(
        exc.status_code, code, title, str(exc.detail), headers=dict(exc.headers or {})
    )


async def _unavailable(request: Request, exc: Exception) -> Response:
    """PostgreSQL or Redis failing under a request: 503 ``unavailable`` with ``Retry-After``
    when the failure is transient (:func:`is_unavailable`), else the 500 of any bug."""
    if not is_unavailable(exc):
        return await _unhandled(request, exc)
    logger.warning(
        "request failed on an unavailable dependency: %s: %s",
        type(exc).__name__,
        str(exc).splitlines()[0] if str(exc) else "",
    )
    err = ServiceUnavailable("A database is briefly unavailable; retry after Retry-After seconds")
    return problem_response(err.status, err.code, err.title, err.detail, headers=err.headers())


async def _unhandled(request: Request, exc: Exception) -> Response:
    if is_unavailable(exc):  # raised where the handlers below could not see its class
        return await _unavailable(request, exc)
    logger.exception("unhandled error", exc_info=exc)
    return problem_response(
        500, "internal_error", "Internal server error", "Something went wrong on our side."
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CanopyError, _canopy_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # the families a lost or refused connection arrives as: answered inside the app (a 503, or
    # the 500 of a bug), so the server never sees them as crashes of the application
    for family in (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        sqlalchemy.exc.SQLAlchemyError,
        redis.exceptions.RedisError,
        OSError,
    ):
        app.add_exception_handler(family, _unavailable)
    app.add_exception_handler(Exception, _unhandled)
