"""Pages: the Jinja2 environment (autoescaped, strict), its filters, and the responses every
console page shares — no caching, a strict Content-Security-Policy, no framing."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.console.forms import once_token
from app.console.session import ConsoleSession, session_of, signer

HTMX = "htmx-2.0.11.min.js"
# htmx may not evaluate code (the CSP forbids it anyway) and swaps error pages too, so a form
# answered with 422 shows its errors in place
HTMX_CONFIG = json.dumps(
    {
        "allowEval": False,
        "allowScriptTags": False,
        "includeIndicatorStyles": False,
        "historyCacheSize": 0,
        "responseHandling": [
            {"code": "204", "swap": False},
            {"code": "[23]..", "swap": True},
            {"code": "[45]..", "swap": True, "error": True},
        ],
    }
)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def when(value: datetime | date | None, seconds: bool = False) -> str:
    """A moment in UTC for people: ``2026-11-29 07:00 UTC``."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        shown = value.astimezone(UTC)
        return shown.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")
    return value.isoformat()


def grams(value: float | None) -> str:
    if value is None:
        return "—"
    if float(value).is_integer():
        return f"{int(value):,} g"
    return f"{value:,.1f} g"


def number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def short(value: object, length: int = 8) -> str:
    return str(value)[:length]


def zip_pairs(values: Any) -> list[tuple[Any, Any]]:
    """Options whose value is also their label."""
    return [(v, v) for v in values]


def pretty_json(value: str | bytes | None) -> str:
    if not value:
        return ""
    try:
        return json.dumps(json.loads(value), indent=2, ensure_ascii=False)
    except ValueError:
        return value.decode() if isinstance(value, bytes) else value


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("app.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        grams=grams,
        number=number,
        percent=percent,
        short=short,
        pretty_json=pretty_json,
        zip_pairs=zip_pairs,
    )
    env.globals.update(htmx=HTMX, htmx_config=HTMX_CONFIG, query=query, once_token=once_token)
    return env


def query(**params: object) -> str:
    """``?a=1&b=2`` from the parameters that have a value."""
    kept = {k: str(v) for k, v in params.items() if v not in (None, "")}
    return "?" + urlencode(kept) if kept else ""


def static(name: str) -> str:
    return f"/console/static/{name}"


async def page(
    request: Request,
    template: str,
    *,
    status: int = 200,
    session: ConsoleSession | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` for this request's session (signed in or not)."""
    session = session or session_of(request)
    html = (
        environment()
        .get_template(template)
        .render(
            request_path=request.url.path,
            session=session,
            csrf_token=signer(request).csrf_token(session),
            static=static,
            markup=Markup,
            **context,
        )
    )
    return HTMLResponse(html, status_code=status)


def redirect(url: str, *, at_notice: bool = True) -> Response:
    """After a successful POST: see the result with a GET (a reload does not post again).
    The page opens at its notice: a form posted to ``…#section`` (so that its errors show in
    view) would otherwise hand its fragment on to the page it redirects to."""
    if at_notice and "#" not in url:
        url += "#notice"
    return RedirectResponse(url, status_code=303)
