"""The console in a real browser: Debian's Chromium, driven by Playwright, against a running
``canopy serve``. One server and one browser for the module; each test its own browser context
(cookies). Screenshots go to ``$CANOPY_CONSOLE_SCREENSHOTS`` (``make screenshots`` points it at
docs/console) or a temporary folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TestServers, drop_database, fresh_database
from tests.console.served import (
    ADMIN_TOKEN,
    RULES,
    Served,
    add_item,
    create_partner,
    cut_orders,
    failing_endpoint,
    fund,
    plant,
    register,
    serve,
    wait_for,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does)",
    ),
]

if CHROMIUM is not None:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
DEFAULT = RULES  # what the served instance publishes at start
BROKEN = DEFAULT.replace("max_share = 0.1 ", "max_share = 1.5 ", 1)
METRO_54 = DEFAULT.replace("energy_per_event_g = 52", "energy_per_event_g = 54", 1)


# --- one server, one browser, one small world -------------------------------------------------


@pytest.fixture(scope="module")
def served(test_servers: TestServers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    url = fresh_database(test_servers, "canopy_console")
    try:
        with serve(url, test_servers.redis_url, tmp_path_factory.mktemp("serve")) as running:
            yield running
    finally:
        drop_database(test_servers, url)


@pytest.fixture(scope="module")
def world(served: Served) -> Iterator[dict[str, Any]]:
    """Two NGOs (one whose webhook endpoint always fails), a catalog, users who planted, and
    the orders cut from their plantings."""
    with ExitStack() as stack:
        failing = stack.enter_context(failing_endpoint())
        alxa = create_partner(served, "Alxa SEE Foundation", webhook_url=failing)
        horqin = create_partner(served, "Horqin Green Belt")
        saxaul = add_item(served, alxa["id"])
        willow = add_item(
            served,
            horqin["id"],
            name="Red willow",
            species="Salix matsudana",
            cost_g=22_400,
            region="Horqin Sandy Land",
        )
        add_item(
            served,
            alxa["id"],
            name="Mongolian pine",
            species="Pinus sylvestris var. mongolica",
            cost_g=146_210,
            budget=50,
        )
        users = {
            handle: register(served, handle, name)
            for handle, name in (("mei", "Mei"), ("lin", "Lin"), ("arslan", "Arslan"))
        }
        for user in users.values():
            fund(served, user["id"], 60_000)
        plant(served, users["mei"], saxaul["id"], 2)
        plant(served, users["arslan"], saxaul["id"], 3)
        plant(served, users["lin"], willow["id"], 1)
        orders = {o["item"]["name"]: o for o in cut_orders(served)}
        yield {
            "alxa": alxa,
            "horqin": horqin,
            "saxaul": saxaul,
            "willow": willow,
            "users": users,
            "orders": orders,
        }


@pytest.fixture(scope="module")
def chromium(world: dict[str, Any]) -> Iterator[Browser]:
    # after the world: Playwright's sync API keeps an event loop running in this thread, and
    # the fixtures before it use asyncio.run (so they are also torn down after it)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("CANOPY_CONSOLE_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def laptop(chromium: Browser, served: Served) -> Iterator[BrowserContext]:
    context = chromium.new_context(viewport=LAPTOP, base_url=served.base)
    context.set_default_timeout(20_000)
    yield context
    context.close()


@pytest.fixture
def phone(chromium: Browser, served: Served) -> Iterator[BrowserContext]:
    context = chromium.new_context(
        viewport=PHONE, base_url=served.base, is_mobile=True, has_touch=True
    )
    context.set_default_timeout(20_000)
    yield context
    context.close()


def sign_in(page: Page, secret: str, *, partner: bool = False, name: str = "") -> None:
    page.goto("/console/sign-in")
    if partner:
        page.get_by_label("an NGO partner (partner API key)").check()
    page.get_by_label("Admin token or partner API key").fill(secret)
    if name:
        page.get_by_label("Your name, for the audit log").fill(name)
    page.get_by_role("button", name="Sign in").click()


def fits(page: Page) -> None:
    """Nothing makes the page scroll sideways (wide tables scroll inside their own box)."""
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport is not None and width <= viewport["width"], f"{page.url} is {width}px wide"


def snap(page: Page, shots: Path, name: str, *, full: bool = True) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=full)


# --- the flows --------------------------------------------------------------------------------


class TestSignIn:
    def test_sign_in_page_on_laptop_and_phone(
        self, laptop: BrowserContext, phone: BrowserContext, shots: Path
    ) -> None:
        page = laptop.new_page()
        page.goto("/console")
        assert page.url.endswith("/console/sign-in")
        expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()
        snap(page, shots, "sign-in", full=False)
        small = phone.new_page()
        small.goto("/console/sign-in")
        expect(small.get_by_role("button", name="Sign in")).to_be_visible()

    def test_keyboard_alone_signs_in(self, laptop: BrowserContext) -> None:
        page = laptop.new_page()
        page.goto("/console/sign-in")
        page.keyboard.press("Tab")  # the skip link comes first
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        page.get_by_label("Admin token or partner API key").focus()
        page.keyboard.type(ADMIN_TOKEN)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        assert ADMIN_TOKEN not in page.content() and ADMIN_TOKEN not in page.url
        cookies = laptop.cookies()
        [session] = [c for c in cookies if c["name"] == "canopy_console"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"


class TestDesigner:
    def test_validate_simulate_publish_then_the_api_observes_it(
        self,
        laptop: BrowserContext,
        served: Served,
        world: dict[str, Any],
        shots: Path,
    ) -> None:
        page = laptop.new_page()
        sign_in(page, ADMIN_TOKEN, name="Ana")
        page.get_by_role("link", name="Rules", exact=True).click()
        editor = page.get_by_label("Rules file (TOML)")
        expect(editor).to_have_value(DEFAULT)
        snap(page, shots, "rules", full=False)

        editor.fill(BROKEN)
        page.get_by_role("button", name="Check the draft").click()
        issues = page.locator("#issues")
        expect(issues).to_contain_text("stealing.max_share")
        expect(issues).to_contain_text("The draft is not valid: 1 problem")
        issues.scroll_into_view_if_needed()
        snap(page, shots, "rules-invalid", full=False)

        page.get_by_label("Rules file (TOML)").fill(METRO_54)
        page.get_by_label("Players", exact=True).fill("300")
        page.get_by_label("Days", exact=True).fill("90")
        before = page.url
        page.get_by_role("button", name="Simulate").click()
        simulation = page.locator("#simulation")
        expect(simulation).to_be_visible(timeout=60_000)
        # htmx put the answer into the page (without it the form posts to /rules/simulate)
        assert page.url == before
        expect(simulation).to_contain_text("Days to the first tree")
        expect(simulation.locator("svg.chart")).to_have_count(15)
        expect(page.locator("#results")).to_contain_text("metro: 52 g → 54 g per event")
        page.locator("#results").screenshot(path=str(shots / "rules-simulation.png"))

        page.get_by_role("button", name="Publish the draft").click()
        notice = page.get_by_role("status").filter(has_text="Version 2 is published")
        expect(notice).to_contain_text("guardrail found no persona", timeout=60_000)

        mei = world["users"]["mei"]

        def metro_energy() -> int | None:
            with served.api() as api:
                response = api.post(
                    "/v1/activities",
                    json={
                        "id": f"metro-{datetime.now(UTC).timestamp()}",
                        "kind": "metro",
                        "occurred_at": datetime.now(UTC).isoformat(),
                    },
                    headers={"Authorization": mei["Authorization"]},
                )
            assert response.status_code in (200, 201), response.text
            body = response.json()
            return 54 if body["energy_g"] == 54 and body["rules_version"] == 2 else None

        assert wait_for(metro_energy, what="the API to value metro with version 2") == 54


class TestOperator:
    def test_dashboard_on_laptop_and_phone(
        self,
        laptop: BrowserContext,
        phone: BrowserContext,
        world: dict[str, Any],
        shots: Path,
    ) -> None:
        page = laptop.new_page()
        sign_in(page, ADMIN_TOKEN, name="Ana")
        expect(page.get_by_text("Every invariant holds.")).to_be_visible()
        expect(page.locator(".stat").first).to_contain_text("Users")
        snap(page, shots, "dashboard")
        small = phone.new_page()
        sign_in(small, ADMIN_TOKEN, name="Ana")
        expect(small.get_by_role("heading", name="Dashboard")).to_be_visible()
        snap(small, shots, "dashboard-phone")
        fits(small)

    def test_create_a_partner_and_see_its_secrets_once(
        self, laptop: BrowserContext, served: Served, shots: Path
    ) -> None:
        page = laptop.new_page()
        sign_in(page, ADMIN_TOKEN, name="Ana")
        page.get_by_role("link", name="Partners").click()
        page.get_by_label("Name").fill("Tengger Desert Trust")
        page.get_by_label("orders", exact=True).check()
        page.get_by_label("Webhook URL").fill("https://tengger.example/canopy/hooks")
        page.get_by_role("button", name="Create partner").click()
        expect(page.get_by_role("heading", name="Copy these secrets now")).to_be_visible()
        key = page.locator("#api-key").inner_text().strip()
        assert key.startswith("cnp_")
        assert page.locator("#webhook-secret").inner_text().startswith("whsec_")
        snap(page, shots, "partner-created", full=False)
        with served.api() as api:
            me = api.get("/partner/v1/me", headers={"Authorization": f"Bearer {key}"})
        assert me.json()["name"] == "Tengger Desert Trust"
        page.get_by_role("link", name="Back to partners").click()
        expect(page.get_by_role("cell", name="Tengger Desert Trust")).to_be_visible()
        assert key not in page.content()
        snap(page, shots, "partners")

    def test_retry_a_failed_delivery(
        self, laptop: BrowserContext, served: Served, world: dict[str, Any], shots: Path
    ) -> None:
        def failed() -> list[Any]:
            with served.api() as api:
                body = api.get(
                    "/admin/v1/webhook-deliveries?status=failed", headers=served.admin
                ).json()
            deliveries: list[Any] = body["deliveries"]
            return deliveries

        [delivery] = wait_for(failed, timeout=30, what="a failed delivery")
        page = laptop.new_page()
        sign_in(page, ADMIN_TOKEN, name="Ana")
        page.get_by_role("link", name="Webhooks").click()
        page.get_by_role("link", name="failed", exact=True).click()
        page.get_by_role("link", name="order.created").first.click()
        expect(page.get_by_role("heading", name="Attempts")).to_be_visible()
        expect(page.get_by_role("cell", name="HTTP 500").first).to_be_visible()
        expect(page.locator("pre.source")).to_contain_text('"type": "order.created"')
        snap(page, shots, "delivery-failed")
        page.get_by_role("button", name="Retry delivery").click()
        expect(page.get_by_role("status")).to_contain_text("A new round of attempts starts now")
        with served.api() as api:
            audit = api.get("/admin/v1/audit", headers=served.admin).json()["entries"]
        assert any(
            e["action"] == "webhook.retried" and e["target"] == f"webhook-delivery:{delivery['id']}"
            for e in audit
        )

    def test_verify_a_planted_order(
        self, laptop: BrowserContext, served: Served, world: dict[str, Any], shots: Path
    ) -> None:
        order = world["orders"]["Red willow"]
        horqin = world["horqin"]
        with served.api() as api:
            reported = api.post(
                f"/partner/v1/orders/{order['id']}/reports",
                json={
                    "planted_quantity": order["quantity"],
                    "planted_on": datetime.now(UTC).date().isoformat(),
                    "location": {"lat": 43.52, "lon": 122.27},
                    "evidence_urls": ["https://horqin.example/photos/2026-willow.jpg"],
                },
                headers={"Authorization": f"Bearer {horqin['api_key']}"},
            )
        assert reported.status_code == 201, reported.text
        page = laptop.new_page()
        sign_in(page, ADMIN_TOKEN, name="Ana")
        page.get_by_role("link", name="Orders").click()
        page.get_by_role("link", name="planted", exact=True).click()
        page.get_by_role("link", name="Red willow").click()
        page.get_by_label("Auditor").fill("Horqin Forestry Bureau")
        page.get_by_label("Note").fill("Field visit: 1 tree counted at the reported location.")
        snap(page, shots, "order-verify")
        page.get_by_role("button", name="Verify order").click()
        expect(page.get_by_role("status")).to_contain_text("The order is verified")
        with served.api() as api:
            seen = api.get(f"/admin/v1/orders/{order['id']}", headers=served.admin).json()
        assert seen["status"] == "verified" and seen["verified_by"] == "Horqin Forestry Bureau"

    def test_find_a_user_grant_props_and_export(
        self, laptop: BrowserContext, served: Served, world: dict[str, Any], shots: Path
    ) -> None:
        page = laptop.new_page()
        sign_in(page, ADMIN_TOKEN, name="Ana")
        page.get_by_role("link", name="Users").click()
        page.get_by_label("Handle").fill("mei")
        page.get_by_label("Handle").press("Enter")
        expect(page.get_by_role("heading", name="@mei")).to_be_visible()
        expect(page.locator(".stat").first).to_contain_text("24,200 g")
        page.get_by_label("Prop", exact=True).select_option("shield")
        page.get_by_label("How many").fill("2")
        page.get_by_role("button", name="Grant").click()
        expect(page.get_by_role("status")).to_contain_text("Props granted.")
        expect(page.get_by_text("shield: 2")).to_be_visible()
        with page.expect_download() as download:
            page.get_by_role("button", name="Download export (JSON)").click()
        assert download.value.suggested_filename == "canopy-export-mei.json"
        snap(page, shots, "user")
        mei = world["users"]["mei"]
        with served.api() as api:
            props = api.get("/v1/props", headers={"Authorization": mei["Authorization"]}).json()
        assert {"type": "shield", "count": 2, "active_until": None} in props["props"]


class TestNgoPartner:
    def test_acknowledge_report_then_over_reported_on_a_phone(
        self, phone: BrowserContext, served: Served, world: dict[str, Any], shots: Path
    ) -> None:
        page = phone.new_page()
        sign_in(page, world["alxa"]["api_key"], partner=True)
        expect(page.get_by_role("heading", name="Your planting orders")).to_be_visible()
        expect(page.get_by_text("Haloxylon ammodendron").first).to_be_visible()
        snap(page, shots, "portal-orders-phone")
        page.get_by_role("link", name="Saxaul").first.click()
        page.get_by_label("Your reference for it").fill("ALX-2026-041")
        page.get_by_role("button", name="Acknowledge order").click()
        expect(page.get_by_role("status")).to_contain_text("Acknowledged")

        def report(quantity: str) -> None:
            page.get_by_label("Quantity planted").fill(quantity)
            page.get_by_label("Planted on").fill(datetime.now(UTC).date().isoformat())
            page.get_by_label("Latitude").fill("39.0833")
            page.get_by_label("Longitude").fill("105.6667")
            page.get_by_label("Evidence URLs").fill("https://alxa.example/plots/41/photo-1.jpg")
            page.get_by_label("Note").fill("North plot, drip irrigation in place.")
            page.get_by_role("button", name="Report planting").click()

        report("3")
        expect(page.get_by_role("status")).to_contain_text("Planting reported")
        expect(page.get_by_text("2 tree left to report")).to_be_visible()
        report("3")
        error = page.locator("#planted_quantity-error")
        expect(error).to_contain_text("This order has 2 tree left to report")
        expect(page.get_by_label("Quantity planted")).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_role("alert").first).to_contain_text("over_reported")
        snap(page, shots, "portal-over-reported-phone")
        with served.api() as api:
            seen = api.get(
                f"/partner/v1/orders/{world['orders']['Saxaul']['id']}",
                headers={"Authorization": f"Bearer {world['alxa']['api_key']}"},
            ).json()
        assert seen["status"] == "acknowledged" and seen["planted_quantity"] == 3

    def test_own_webhook_deliveries(
        self, laptop: BrowserContext, world: dict[str, Any], shots: Path
    ) -> None:
        page = laptop.new_page()
        sign_in(page, world["alxa"]["api_key"], partner=True)
        page.get_by_role("link", name="Webhooks").click()
        expect(page.get_by_role("link", name="order.created").first).to_be_visible()
        snap(page, shots, "portal-deliveries")

    def test_partner_cannot_open_operator_pages_or_another_partners_orders(
        self, laptop: BrowserContext, world: dict[str, Any]
    ) -> None:
        page = laptop.new_page()
        sign_in(page, world["horqin"]["api_key"], partner=True)
        for path in ("/console/dashboard", "/console/partners", "/console/rules"):
            response = page.goto(path)
            assert response is not None and response.status == 404, path
            expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        other = world["orders"]["Saxaul"]["id"]
        response = page.goto(f"/console/portal/orders/{other}")
        assert response is not None and response.status == 404


class TestForgedForms:
    def test_posts_without_the_token_are_refused(
        self, laptop: BrowserContext, served: Served
    ) -> None:
        page = laptop.new_page()
        sign_in(page, ADMIN_TOKEN)
        # signed in, cookie sent, but no CSRF token in the form
        response = page.request.post(
            "/console/partners", form={"name": "No Token Partner", "scopes": "orders"}
        )
        assert response.status == 403
        # a page on another site submitting a form to the console (cookie withheld: Strict)
        page.route(
            "http://evil.test/**",
            lambda route: route.fulfill(
                content_type="text/html",
                body=(
                    f'<form id="f" method="post" action="{served.base}/console/partners">'
                    '<input name="name" value="Evil Partner"><input name="scopes" value="orders">'
                    "</form><script>document.getElementById('f').submit()</script>"
                ),
            ),
        )
        page.goto("http://evil.test/attack")
        # SameSite=Strict: the browser sent no session cookie, so the console asks to sign in
        page.wait_for_url(f"{served.base}/console/sign-in**")
        expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()
        with served.api() as api:
            names = [
                p["name"]
                for p in api.get("/admin/v1/partners", headers=served.admin).json()["partners"]
            ]
        assert "Evil Partner" not in names and "No Token Partner" not in names
