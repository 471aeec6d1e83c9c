"""The browser console at ``/console``: designers, operators and NGO partners work in the browser.

Server-rendered (Jinja2) with a little htmx, its assets inside the package (no JavaScript
build). Every action calls the same domain services, with the same checks, as the API; the
console adds sign-in with a session cookie and CSRF protection in front of them."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

STATIC_PATH = "/console/static"


def install(app: FastAPI) -> None:
    """Add the console's pages and static files to ``app``."""
    from app.console.pages import console_pages

    # the static files first: the pages end with a catch-all for unknown console addresses
    app.mount(STATIC_PATH, StaticFiles(packages=[("app.console", "static")]), name="console-static")
    app.include_router(console_pages())
