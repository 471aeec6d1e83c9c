"""Domain errors and their one translation into ``application/problem+json`` (RFC 9457).

Services raise subclasses of :class:`CanopyError`; handlers never build error responses by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
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


class ServiceUnavailable(CanopyError):
    status, code, title = 503, "unavailable", "Service unavailable"


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


async def _unhandled(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error", exc_info=exc)
    return problem_response(
        500, "internal_error", "Internal server error", "Something went wrong on our side."
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CanopyError, _canopy_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
