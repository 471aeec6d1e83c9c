"""The console's route class: errors become pages (not problem+json), a signed-out browser is sent
to the sign-in form, the session cookie is renewed, and every answer carries the console's
security headers."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from app.console.rendering import SECURITY_HEADERS, page, redirect
from app.console.session import (
    SignInRequired,
    cookie_header_args,
    session_of,
    signer,
)
from app.core.errors import CanopyError, NotFound

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

SIGN_IN = "/console/sign-in"


def _sign_in_first(request: Request) -> Response:
    target = SIGN_IN
    if request.method == "GET" and request.url.path != "/console":
        query = request.url.query
        target += "?next=" + quote(request.url.path + (f"?{query}" if query else ""), safe="")
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return redirect(target, at_notice=False)


async def error_page(request: Request, exc: CanopyError) -> Response:
    response = await page(
        request,
        "error.html",
        status=exc.status,
        title=exc.title,
        problem=exc,
    )
    for name, value in exc.headers().items():
        if name.lower() != "www-authenticate":  # a page, not an API: no bearer challenge
            response.headers[name] = value
    return response


def finish(request: Request, response: Response) -> Response:
    """Renew the session cookie when it changed, and add the security headers."""
    if not getattr(request.state, "console_session_fresh", True):
        session = session_of(request)
        response.set_cookie(value=signer(request).dumps(session), **cookie_header_args(request))
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class ConsoleRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await inner(request)
            except SignInRequired:
                response = _sign_in_first(request)
            except CanopyError as exc:
                response = await error_page(request, exc)
            except RequestValidationError:
                # a malformed id or parameter in a URL names nothing
                response = await error_page(request, NotFound())
            return finish(request, response)

        return handler


def console_router() -> APIRouter:
    """A router of console pages: HTML (kept out of the API's OpenAPI document)."""
    return APIRouter(route_class=ConsoleRoute, include_in_schema=False)
