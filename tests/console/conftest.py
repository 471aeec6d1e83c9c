"""Console tests over ASGI: a client that keeps the session cookie and sends each form's CSRF
token the way a browser submitting the page would."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.core.clock import FrozenClock
from tests.conftest import ADMIN_TOKEN

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ONCE = re.compile(r'name="once" value="([^"]+)"')
BASE = "http://127.0.0.1"


@pytest.fixture
def clock() -> FrozenClock:
    # webhook signatures and rules' effective_from are checked against real time
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"webhook_allow_private": True, "webhook_retry_schedule": [timedelta(seconds=1)]}
    )


@dataclass
class Console:
    """A browser on the console: cookies kept, each form posted with its page's CSRF token."""

    http: httpx.AsyncClient
    page: httpx.Response | None = None
    sent: list[httpx.Response] = field(default_factory=list)

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.get(url, **kwargs)
        self.page = response
        self.sent.append(response)
        return response

    def token(self) -> str:
        assert self.page is not None, "open a page first"
        found = CSRF.search(self.page.text)
        assert found, "the page has no form"
        return html.unescape(found.group(1))

    def once(self) -> str:
        assert self.page is not None
        found = ONCE.search(self.page.text)
        assert found, "the page has no once-only form"
        return html.unescape(found.group(1))

    async def post(
        self,
        url: str,
        data: dict[str, Any] | None = None,
        *,
        csrf: bool = True,
        files: dict[str, Any] | None = None,
        follow: bool = False,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        body = dict(data or {})
        if csrf:
            body["csrf_token"] = self.token()
        response = await self.http.post(
            url, data=body, files=files, follow_redirects=follow, headers=headers
        )
        if response.headers.get("content-type", "").startswith("text/html"):
            self.page = response
        self.sent.append(response)
        return response

    async def sign_in(self, secret: str, kind: str = "operator", name: str = "") -> httpx.Response:
        await self.get("/console/sign-in")
        return await self.post(
            "/console/sign-in", {"kind": kind, "secret": secret, "name": name}, follow=True
        )


async def console_client(app: FastAPI) -> AsyncIterator[Console]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield Console(http)


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[Console]:
    async for console in console_client(app):
        yield console


@pytest.fixture
async def operator(app: FastAPI) -> AsyncIterator[Console]:
    async for console in console_client(app):
        signed_in = await console.sign_in(ADMIN_TOKEN, name="Ana")
        assert signed_in.status_code == 200 and "Dashboard" in signed_in.text, signed_in.text
        yield console


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def text_of(response: httpx.Response) -> str:
    """The page's visible text, roughly (tags dropped, entities decoded, spaces squeezed)."""
    without = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", response.text, flags=re.S)
    inline = re.sub(r"</?(code|em|strong|a|span|small)\b[^>]*>", "", without)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inline)).split())
