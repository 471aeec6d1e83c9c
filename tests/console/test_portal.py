"""NGO partners in the console: their orders, acknowledging, reporting planting (with the
``over_reported`` guard as a form error), their webhook deliveries — and nobody else's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.core.clock import FrozenClock
from tests.console.conftest import Console, console_client, text_of
from tests.console.test_operators import an_order, failed_delivery
from tests.planting.conftest import NGO, Receiver, create_ngo, scalar


@pytest.fixture
async def ngo(api: httpx.AsyncClient, admin_headers: dict[str, str]) -> NGO:
    return await create_ngo(api, admin_headers, name="Alxa SEE")


@pytest.fixture
async def partner(app: FastAPI, ngo: NGO) -> AsyncIterator[Console]:
    async for console in console_client(app):
        page = await console.sign_in(ngo.api_key, kind="partner")
        assert page.status_code == 200
        yield console


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver(status=503).start()
    yield server
    await server.stop()


class TestOrders:
    async def test_orders_with_quantities_and_species(
        self,
        partner: Console,
        ngo: NGO,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        await an_order(api, admin_headers, app, ngo, quantity=3)
        page = await partner.get("/console/portal/orders")
        shown = text_of(page)
        assert "Saxaul" in shown and "Haloxylon ammodendron" in shown
        assert "0 / 3 tree" in shown and "new" in shown
        new = text_of(await partner.get("/console/portal/orders?status=open"))
        assert "Saxaul" in new
        planted = text_of(await partner.get("/console/portal/orders?status=planted"))
        assert "No orders here yet." in planted

    async def test_acknowledge_then_report_then_over_reported(
        self,
        partner: Console,
        ngo: NGO,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        order, _ = await an_order(api, admin_headers, app, ngo, quantity=3)
        url = f"/console/portal/orders/{order['id']}"
        await partner.get(url)
        acked = await partner.post(
            f"{url}/acknowledge", {"external_ref": "ALX-2026-17"}, follow=True
        )
        assert "Acknowledged" in text_of(acked)
        seen = (await api.get(f"/partner/v1/orders/{order['id']}", headers=ngo.headers)).json()
        assert seen["status"] == "acknowledged" and seen["external_ref"] == "ALX-2026-17"

        report = {
            "planted_quantity": "2",
            "planted_on": "2026-03-12",
            "location.lat": "39.0833",
            "location.lon": "105.6667",
            "evidence_urls": "https://photos.example/a.jpg\nhttps://photos.example/b.jpg",
            "note": "north plot",
        }
        done = await partner.post(f"{url}/reports", {**report, "once": partner.once()}, follow=True)
        assert "Planting reported." in text_of(done)
        assert "1 tree left to report" in text_of(done)

        over = await partner.post(f"{url}/reports", {**report, "once": partner.once()})
        assert over.status_code == 422
        assert "This order has 1 tree left to report" in text_of(over)
        assert 'id="planted_quantity-error"' in over.text
        assert "code over_reported" in text_of(over)
        # the form keeps what was typed
        assert 'value="39.0833"' in over.text

        last = await partner.post(
            f"{url}/reports",
            {**report, "planted_quantity": "1", "once": partner.once()},
            follow=True,
        )
        assert "Planting reported." in text_of(last)
        seen = (await api.get(f"/partner/v1/orders/{order['id']}", headers=ngo.headers)).json()
        assert seen["status"] == "planted" and seen["planted_quantity"] == 3
        assert seen["reports"][0]["evidence_urls"] == [
            "https://photos.example/a.jpg",
            "https://photos.example/b.jpg",
        ]

    async def test_report_fields_are_checked_as_the_api_checks_them(
        self,
        partner: Console,
        ngo: NGO,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        order, _ = await an_order(api, admin_headers, app, ngo)
        url = f"/console/portal/orders/{order['id']}"
        await partner.get(url)
        page = await partner.post(
            f"{url}/reports",
            {
                "planted_quantity": "0",
                "planted_on": "not a date",
                "location.lat": "91",
                "location.lon": "east",
                "evidence_urls": "ftp://photos.example/a.jpg",
            },
        )
        assert page.status_code == 422
        for field in ("planted_quantity", "planted_on", "location-lat", "location-lon"):
            assert f'id="{field}-error"' in page.text, field
        assert 'id="evidence_urls-error"' in page.text

    async def test_a_reload_does_not_report_twice(
        self,
        partner: Console,
        ngo: NGO,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        order, _ = await an_order(api, admin_headers, app, ngo, quantity=5)
        url = f"/console/portal/orders/{order['id']}"
        await partner.get(url)
        form = {
            "planted_quantity": "2",
            "planted_on": "2026-03-12",
            "location.lat": "39",
            "location.lon": "105",
            "once": partner.once(),
        }
        assert (await partner.post(f"{url}/reports", form)).status_code == 303
        assert (await partner.post(f"{url}/reports", form)).status_code == 409
        seen = (await api.get(f"/partner/v1/orders/{order['id']}", headers=ngo.headers)).json()
        assert seen["planted_quantity"] == 2

    async def test_another_partners_order_is_not_found(
        self,
        partner: Console,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        other = await create_ngo(api, admin_headers, name="Someone Else")
        order, _ = await an_order(api, admin_headers, app, other)
        url = f"/console/portal/orders/{order['id']}"
        assert (await partner.get(url)).status_code == 404
        await partner.get("/console/portal/orders")
        assert (await partner.post(f"{url}/acknowledge", {})).status_code == 404
        report = {
            "planted_quantity": "1",
            "planted_on": "2026-03-12",
            "location.lat": "39",
            "location.lon": "105",
        }
        assert (await partner.post(f"{url}/reports", report)).status_code == 404
        listing = text_of(await partner.get("/console/portal/orders"))
        assert "Saxaul" not in listing
        status = await scalar(
            app, "SELECT status FROM planting_orders WHERE id = :i", i=order["id"]
        )
        assert status == "open"


class TestDeliveries:
    async def test_own_deliveries_with_attempts_and_retry(
        self,
        app: FastAPI,
        clock: FrozenClock,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        receiver: Receiver,
    ) -> None:
        flaky, delivery_id = await failed_delivery(app, clock, api, admin_headers, receiver.url)
        async for portal in console_client(app):
            await portal.sign_in(flaky.api_key, kind="partner")
            listing = await portal.get("/console/portal/deliveries?status=failed")
            assert "order.created" in listing.text
            detail = await portal.get(f"/console/portal/deliveries/{delivery_id}")
            assert text_of(detail).count("HTTP 503") >= 2
            assert receiver.url in detail.text
            retried = await portal.post(
                f"/console/portal/deliveries/{delivery_id}/retry", follow=True
            )
            assert "A new round of attempts starts now" in text_of(retried)
        status = await scalar(
            app, "SELECT status FROM webhook_deliveries WHERE id = :i", i=delivery_id
        )
        assert status == "pending"

    async def test_another_partners_delivery_is_not_found(
        self,
        partner: Console,
        app: FastAPI,
        clock: FrozenClock,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        receiver: Receiver,
    ) -> None:
        _, delivery_id = await failed_delivery(app, clock, api, admin_headers, receiver.url)
        assert (await partner.get(f"/console/portal/deliveries/{delivery_id}")).status_code == 404
        await partner.get("/console/portal/deliveries")
        retried = await partner.post(f"/console/portal/deliveries/{delivery_id}/retry")
        assert retried.status_code == 404
        assert "order.created" not in (await partner.get("/console/portal/deliveries")).text
        status = await scalar(
            app, "SELECT status FROM webhook_deliveries WHERE id = :i", i=delivery_id
        )
        assert status == "failed"
