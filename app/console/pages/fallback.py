"""Any other address under /console: the console's own "not found" page, not the API's JSON."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from app.console.rendering import redirect
from app.console.routing import console_router
from app.console.session import CurrentSession
from app.core.errors import NotFound

router = console_router()


@router.get("/console/{rest:path}")
async def not_found(request: Request, session: CurrentSession, rest: str) -> Response:
    if not rest:
        return redirect("/console", at_notice=False)
    raise NotFound("There is no such page in the console.")
