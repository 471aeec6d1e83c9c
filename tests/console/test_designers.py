"""Designers in the console: versions, a version's text, diffs in designers' words, a draft
validated by key path, simulated against the rules in force, published with the guardrail."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.rules.loader import default_rules_path
from tests.console.conftest import Console, text_of

DEFAULT = default_rules_path().read_text()
METRO_60 = DEFAULT.replace("energy_per_event_g = 52", "energy_per_event_g = 60", 1)
BROKEN = DEFAULT.replace("max_share = 0.1 ", "max_share = 1.5 ", 1).replace(
    "energy_per_event_g = 52", 'energy_per_event_g = "lots"', 1
)
# walking worth three times as much: everybody's first tree comes much sooner
GENEROUS = DEFAULT.replace("energy_per_unit_g = 0.0165", "energy_per_unit_g = 0.05", 1)


async def active_version(api: httpx.AsyncClient, admin_headers: dict[str, str]) -> int:
    body = (await api.get("/admin/v1/rules", headers=admin_headers)).json()
    version: int = body["active"]["version"]
    return version


class TestVersions:
    async def test_versions_with_the_one_in_force(self, operator: Console) -> None:
        page = await operator.get("/console/rules")
        assert page.status_code == 200
        shown = text_of(page)
        assert "Version 1 is in force." in shown
        assert "ant-forest-classic" in shown and "in force" in shown

    async def test_a_versions_text(self, operator: Console) -> None:
        page = await operator.get("/console/rules/1")
        assert "version = &#34;ant-forest-classic&#34;" in page.text or (
            'version = "ant-forest-classic"' in text_of(page)
        )
        assert (await operator.get("/console/rules/99")).status_code == 404
        assert (await operator.get("/console/rules/nope")).status_code == 404

    async def test_diff_between_two_versions_in_designers_words(
        self, operator: Console, api: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        published = await api.post(
            "/admin/v1/rules",
            content=METRO_60,
            headers={**admin_headers, "Content-Type": "application/toml"},
        )
        assert published.status_code == 201
        page = await operator.get("/console/rules/diff?old=1&new=2")
        assert "metro: 52 g → 60 g per event" in text_of(page)
        assert "superseded" in text_of(await operator.get("/console/rules"))


class TestDraft:
    async def test_broken_draft_shows_every_problem_by_key_path(self, operator: Console) -> None:
        await operator.get("/console/rules")
        page = await operator.post("/console/rules/validate", {"draft": BROKEN})
        assert page.status_code == 422
        shown = text_of(page)
        assert "The draft is not valid: 2 problems" in shown
        assert "stealing.max_share:" in shown
        assert "activities.metro.energy_per_event_g:" in shown
        # the draft stays in the editor to be fixed
        assert "max_share = 1.5" in page.text

    async def test_valid_draft_says_what_it_changes(self, operator: Console) -> None:
        await operator.get("/console/rules")
        page = await operator.post("/console/rules/validate", {"draft": METRO_60})
        assert page.status_code == 200
        shown = text_of(page)
        assert "The draft is valid." in shown
        assert "metro: 52 g → 60 g per event" in shown

    async def test_uploaded_file_replaces_the_text_area(self, operator: Console) -> None:
        await operator.get("/console/rules")
        page = await operator.post(
            "/console/rules/validate",
            {"draft": DEFAULT},
            files={"draft_file": ("draft.toml", BROKEN.encode(), "application/toml")},
        )
        assert page.status_code == 422
        assert "stealing.max_share:" in text_of(page)

    async def test_simulation_of_the_draft_against_the_rules_in_force(
        self, operator: Console
    ) -> None:
        await operator.get("/console/rules")
        page = await operator.post(
            "/console/rules/simulate",
            {"draft": GENEROUS, "players": "60", "days": "40", "seed": "3"},
        )
        assert page.status_code == 200, text_of(page)[:500]
        shown = text_of(page)
        assert "Simulation: 60 players, 40 days, seed 3" in shown
        assert "Days to the first tree" in shown
        for measure in ("Minted", "Collected (own)", "Stolen (taken from friends)", "Expired"):
            assert f"{measure} energy" in shown
        # first tree, 4 per-day bars, then for each run: gathered, minted and the three flows
        # (collected, stolen, expired) day by day
        assert page.text.count('<svg class="chart"') == 5 + 2 * 5
        for flow in (
            "Collected from their own forest: per player, day by day",
            "Stolen (taken from friends): per player, day by day",
            "Expired before anyone collected it: per player, day by day",
        ):
            assert flow in shown
        assert "g expired per player" in page.text
        assert "walker" in shown and "commuter" in shown
        assert "→" in shown  # the compare table: in force → draft

    async def test_simulation_limits_are_form_errors(self, operator: Console) -> None:
        await operator.get("/console/rules")
        page = await operator.post(
            "/console/rules/simulate", {"draft": DEFAULT, "players": "0", "days": "9999"}
        )
        assert page.status_code == 422
        assert page.text.count('aria-invalid="true"') >= 2


class TestPublish:
    async def test_publish_now_takes_effect_for_the_api(
        self,
        operator: Console,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        await operator.get("/console/rules")
        page = await operator.post(
            "/console/rules/publish", {"draft": METRO_60, "effective_from": ""}, follow=True
        )
        assert page.status_code == 200
        assert "Version 2 is published without a simulation." in text_of(page)
        assert await active_version(api, admin_headers) == 2
        assert (
            app.state.rules_registry.at(app.state.clock.now())
            .rules.activities["metro"]
            .energy_per_event_g
            == 60
        )
        async with app.state.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT actor, summary FROM audit_entries WHERE action = 'rules.published'"
                    )
                )
            ).one()
        assert row.actor == "console:Ana"

    async def test_publish_later_is_scheduled(
        self,
        operator: Console,
        clock: FrozenClock,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
    ) -> None:
        later = (clock.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
        await operator.get("/console/rules")
        page = await operator.post(
            "/console/rules/publish", {"draft": METRO_60, "effective_from": later}, follow=True
        )
        assert "Version 2 is published" in text_of(page)
        assert "scheduled" in text_of(page)
        assert await active_version(api, admin_headers) == 1

    async def test_effective_from_in_the_past_is_shown_next_to_the_field(
        self, operator: Console, clock: FrozenClock
    ) -> None:
        earlier = (clock.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
        await operator.get("/console/rules")
        page = await operator.post(
            "/console/rules/publish", {"draft": METRO_60, "effective_from": earlier}
        )
        assert page.status_code == 422
        assert 'id="effective_from-error"' in page.text
        assert "is before now" in text_of(page)

    async def test_invalid_draft_is_not_published(
        self, operator: Console, api: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        await operator.get("/console/rules")
        page = await operator.post("/console/rules/publish", {"draft": BROKEN})
        assert page.status_code == 422
        assert "stealing.max_share" in text_of(page)
        assert await active_version(api, admin_headers) == 1

    async def test_guardrail_refuses_then_a_second_confirmation_forces(
        self,
        operator: Console,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        await operator.get("/console/rules")
        refused = await operator.post(
            "/console/rules/publish", {"draft": GENEROUS, "guardrail": "on"}
        )
        assert refused.status_code == 422
        shown = text_of(refused)
        assert "The simulator refused this change" in shown
        assert "days to first saxaul" in shown
        assert await active_version(api, admin_headers) == 1

        # "Publish anyway" without ticking the confirmation: still nothing
        unconfirmed = await operator.post(
            "/console/rules/publish", {"draft": GENEROUS, "force": "on"}
        )
        assert unconfirmed.status_code == 422
        assert 'id="confirm_force-error"' in unconfirmed.text
        assert await active_version(api, admin_headers) == 1

        forced = await operator.post(
            "/console/rules/publish",
            {"draft": GENEROUS, "force": "on", "confirm_force": "on"},
            follow=True,
        )
        assert "despite the simulator's verdict" in text_of(forced)
        assert await active_version(api, admin_headers) == 2
        async with app.state.engine.connect() as conn:
            summary = (
                await conn.execute(
                    text("SELECT summary FROM audit_entries WHERE action = 'rules.published'")
                )
            ).scalar()
        assert "(guardrail overridden)" in summary

    async def test_same_text_again_changes_nothing(self, operator: Console) -> None:
        await operator.get("/console/rules")
        page = await operator.post("/console/rules/publish", {"draft": DEFAULT}, follow=True)
        assert "This text is already the latest version (1): nothing changed." in text_of(page)
