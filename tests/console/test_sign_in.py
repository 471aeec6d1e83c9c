"""Console sign-in: the admin token or a partner key exchanged for a short-lived signed cookie,
CSRF on every form, sign-out, and who may open which page."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from tests.conftest import ADMIN_TOKEN
from tests.console.conftest import Console, console_client, text_of
from tests.planting.conftest import create_ngo


def cookie_header(response: httpx.Response) -> str:
    [header] = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    return header


class TestSignIn:
    async def test_anonymous_pages_send_to_sign_in(self, browser: Console) -> None:
        response = await browser.get("/console/dashboard")
        assert response.status_code == 303
        assert response.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fdashboard"

    async def test_operator_signs_in_with_the_admin_token(
        self, browser: Console, app: FastAPI
    ) -> None:
        page = await browser.sign_in(ADMIN_TOKEN, name="Ana")
        assert page.status_code == 200
        assert str(page.url).endswith("/console/dashboard")
        assert "Operator · Ana" in text_of(page)
        async with app.state.engine.connect() as conn:
            actor = (
                await conn.execute(
                    text("SELECT actor FROM audit_entries WHERE action = 'console.signed_in'")
                )
            ).scalar()
        assert actor == "console:Ana"

    async def test_cookie_is_httponly_strict_and_short_lived(self, browser: Console) -> None:
        await browser.get("/console/sign-in")
        response = await browser.post(
            "/console/sign-in", {"kind": "operator", "secret": ADMIN_TOKEN}
        )
        cookie = cookie_header(response).lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
        assert "max-age=28800" in cookie
        assert "secure" not in cookie  # on localhost (http) only

    async def test_cookie_is_secure_away_from_localhost(self, app: FastAPI) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://console.example") as c:
            response = await c.get("/console/sign-in")
        assert "secure" in cookie_header(response).lower()

    async def test_wrong_token_is_refused_and_never_echoed(self, browser: Console) -> None:
        wrong = "not-the-admin-token-but-long-enough-to-look-real"
        await browser.get("/console/sign-in")
        response = await browser.post("/console/sign-in", {"kind": "operator", "secret": wrong})
        assert response.status_code == 401
        assert "This is not the admin token." in text_of(response)
        assert wrong not in response.text
        assert 'aria-invalid="true"' in response.text

    async def test_token_never_appears_in_pages_urls_or_logs(
        self, browser: Console, caplog: object
    ) -> None:
        import logging

        assert hasattr(caplog, "set_level") and hasattr(caplog, "text")
        caplog.set_level(logging.DEBUG)
        await browser.sign_in(ADMIN_TOKEN)
        for path in ("/console/dashboard", "/console/partners", "/console/rules"):
            await browser.get(path)
        for response in browser.sent:
            assert ADMIN_TOKEN not in response.text
            assert ADMIN_TOKEN not in str(response.url)
            assert ADMIN_TOKEN not in response.headers.get("location", "")
            assert ADMIN_TOKEN not in response.headers.get("set-cookie", "")
        assert ADMIN_TOKEN not in caplog.text

    async def test_partner_signs_in_with_its_key(
        self, browser: Console, api: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        ngo = await create_ngo(api, admin_headers, name="Green Belt")
        page = await browser.sign_in(ngo.api_key, kind="partner")
        assert str(page.url).endswith("/console/portal/orders")
        assert "Partner · Green Belt" in text_of(page)

    async def test_sign_in_is_rate_limited(self, browser: Console, app: FastAPI) -> None:
        from tests.conftest import set_limits

        set_limits(app, login="2/minute")
        await browser.get("/console/sign-in")
        for _ in range(2):
            await browser.post("/console/sign-in", {"kind": "operator", "secret": "x" * 40})
        response = await browser.post("/console/sign-in", {"kind": "operator", "secret": "x" * 40})
        assert response.status_code == 429
        assert "Too many requests" in text_of(response)

    async def test_next_goes_back_to_the_page_asked_for_and_only_to_the_console(
        self, browser: Console
    ) -> None:
        await browser.get("/console/sign-in?next=/console/orders")
        page = await browser.post(
            "/console/sign-in",
            {"kind": "operator", "secret": ADMIN_TOKEN, "next": "/console/orders"},
        )
        assert page.headers["location"] == "/console/orders"
        await browser.post("/console/sign-out", follow=True)
        page = await browser.post(
            "/console/sign-in",
            {"kind": "operator", "secret": ADMIN_TOKEN, "next": "//evil.example/console/"},
        )
        assert page.headers["location"] == "/console/dashboard"


class TestCsrf:
    async def test_form_without_token_is_refused(
        self, operator: Console, api: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        await operator.get("/console/partners")
        response = await operator.post(
            "/console/partners", {"name": "Sneaky", "scopes": "orders"}, csrf=False
        )
        assert response.status_code == 403
        assert "security token" in text_of(response)
        listed = await api.get("/admin/v1/partners", headers=admin_headers)
        assert listed.json()["partners"] == []

    async def test_token_of_another_session_is_refused(
        self, operator: Console, app: FastAPI
    ) -> None:
        await operator.get("/console/partners")
        foreign = operator.token()
        async for other in console_client(app):
            await other.sign_in(ADMIN_TOKEN)
            response = await other.http.post(
                "/console/partners", data={"name": "X", "scopes": "orders", "csrf_token": foreign}
            )
            assert response.status_code == 403

    async def test_cross_site_post_is_refused_even_with_the_token(self, operator: Console) -> None:
        await operator.get("/console/partners")
        response = await operator.post(
            "/console/partners",
            {"name": "X", "scopes": "orders"},
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        )
        assert response.status_code == 403

    async def test_foreign_origin_is_refused_where_fetch_metadata_is_missing(
        self, operator: Console
    ) -> None:
        await operator.get("/console/partners")
        response = await operator.post(
            "/console/partners",
            {"name": "X", "scopes": "orders"},
            headers={"Origin": "https://evil.example"},
        )
        assert response.status_code == 403

    async def test_sign_in_form_is_protected_too(self, browser: Console) -> None:
        await browser.get("/console/sign-in")
        response = await browser.post(
            "/console/sign-in", {"kind": "operator", "secret": ADMIN_TOKEN}, csrf=False
        )
        assert response.status_code == 403


class TestSessions:
    async def test_sign_out_ends_the_session_even_for_a_kept_cookie(
        self, operator: Console, app: FastAPI
    ) -> None:
        kept = dict(operator.http.cookies)
        await operator.get("/console/dashboard")
        out = await operator.post("/console/sign-out", follow=True)
        assert "You are signed out." in text_of(out)
        # every process hears of it through Redis, not only the one that signed out
        ended = [k async for k in app.state.redis.scan_iter(match="canopy:console:ended:*")]
        assert len(ended) == 1 and 0 < await app.state.redis.ttl(ended[0]) <= 8 * 3600 + 1
        async for thief in console_client(app):
            for name, value in kept.items():
                thief.http.cookies.set(name, value, domain="127.0.0.1", path="/console")
            response = await thief.get("/console/dashboard")
            assert response.status_code == 303

    async def test_idle_session_expires(self, operator: Console, clock: FrozenClock) -> None:
        assert (await operator.get("/console/dashboard")).status_code == 200
        clock.advance(minutes=29)
        assert (await operator.get("/console/dashboard")).status_code == 200
        clock.advance(minutes=29)  # renewed by the visit before
        assert (await operator.get("/console/dashboard")).status_code == 200
        clock.advance(minutes=31)
        assert (await operator.get("/console/dashboard")).status_code == 303

    async def test_session_ends_after_eight_hours_however_busy(
        self, operator: Console, clock: FrozenClock
    ) -> None:
        for _ in range(16):
            clock.advance(minutes=29)
            assert (await operator.get("/console/dashboard")).status_code == 200
        clock.advance(minutes=29)
        assert (await operator.get("/console/dashboard")).status_code == 303

    async def test_tampered_cookie_is_ignored(self, operator: Console) -> None:
        [(name, value)] = list(operator.http.cookies.items())
        body, _, mac = value.partition(".")
        operator.http.cookies.clear()
        operator.http.cookies.set(name, body + "." + mac[::-1], domain="127.0.0.1", path="/console")
        assert (await operator.get("/console/dashboard")).status_code == 303

    async def test_rotated_partner_key_ends_its_sessions(
        self,
        browser: Console,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
    ) -> None:
        ngo = await create_ngo(api, admin_headers)
        await browser.sign_in(ngo.api_key, kind="partner")
        assert (await browser.get("/console/portal/orders")).status_code == 200
        rotated = await api.post(f"/admin/v1/partners/{ngo.id}/rotate-key", headers=admin_headers)
        assert rotated.status_code == 200
        assert (await browser.get("/console/portal/orders")).status_code == 303

    async def test_session_lifetime_constants(self) -> None:
        from app.console import session

        assert timedelta(minutes=30) == session.IDLE
        assert timedelta(hours=8) == session.ABSOLUTE


class TestWhoMayOpenWhat:
    async def test_partner_gets_404_on_operator_pages(
        self, browser: Console, api: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        ngo = await create_ngo(api, admin_headers)
        await browser.sign_in(ngo.api_key, kind="partner")
        for path in (
            "/console/dashboard",
            "/console/partners",
            "/console/rules",
            "/console/orders",
            "/console/users",
            "/console/deliveries",
        ):
            response = await browser.get(path)
            assert response.status_code == 404, path
            assert "Not found" in text_of(response)
        await browser.get("/console/portal/orders")
        created = await browser.post("/console/partners", {"name": "Mine", "scopes": "orders"})
        assert created.status_code == 404

    async def test_operator_gets_404_in_the_partner_portal(self, operator: Console) -> None:
        assert (await operator.get("/console/portal/orders")).status_code == 404

    async def test_partner_key_without_orders_scope_cannot_see_orders(
        self, browser: Console, api: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        transit = await create_ngo(api, admin_headers, name="Metro", scopes=["activities"])
        await browser.sign_in(transit.api_key, kind="partner")
        response = await browser.get("/console/portal/orders")
        assert response.status_code == 403
        assert "lacks the 'orders' scope" in text_of(response)


class TestPages:
    async def test_pages_carry_the_console_security_headers(self, operator: Console) -> None:
        response = await operator.get("/console/dashboard")
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"

    async def test_unknown_console_address_is_a_page_not_json(self, operator: Console) -> None:
        response = await operator.get("/console/nowhere/at/all")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "There is no such page in the console." in text_of(response)

    async def test_static_assets_come_from_the_package(self, browser: Console) -> None:
        css = await browser.get("/console/static/console.css")
        assert css.status_code == 200 and "--accent" in css.text
        js = await browser.get("/console/static/htmx-2.0.11.min.js")
        assert js.status_code == 200 and "htmx" in js.text

    async def test_console_is_not_in_the_api_document(self, api: httpx.AsyncClient) -> None:
        paths = (await api.get("/openapi.json")).json()["paths"]
        assert not [p for p in paths if p.startswith("/console")]

    async def test_every_form_has_a_csrf_token_and_labels(self, operator: Console) -> None:
        import re

        for path in (
            "/console/dashboard",
            "/console/rules",
            "/console/partners",
            "/console/catalog",
            "/console/users",
        ):
            page = await operator.get(path)
            posts = re.findall(r'<form method="post".*?</form>', page.text, flags=re.S)
            assert posts, path
            for form in posts:
                assert 'name="csrf_token"' in form, (path, form[:200])
            for control in re.findall(r'<input id="(f-[^"]+)"', page.text):
                assert f'for="{control}"' in page.text, (path, control)
