"""Helpers for rewards and campaigns tests: partners with the rewards scope, rewards, users with
energy, the rules' [rewards] and [campaigns] tables."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from app.core.worker import Worker
from app.rewards.jobs import rewards_jobs
from app.rules.schema import CampaignsRules, RewardsRules
from tests.planting.conftest import NGO, create_ngo

TRANSIT = {"name": "Metro day pass", "kind": "transit_ride", "cost_g": 500, "budget": 10}


async def create_partner(
    client: httpx.AsyncClient, admin_headers: dict[str, str], name: str = "City Metro", **kw: Any
) -> NGO:
    return await create_ngo(client, admin_headers, name=name, scopes=["rewards"], **kw)


async def add_reward(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    partner_id: str,
    fulfilment: str = "codes",
    **overrides: Any,
) -> dict[str, Any]:
    body = {**TRANSIT, "partner_id": partner_id, "fulfilment": fulfilment, **overrides}
    response = await client.post("/admin/v1/rewards", json=body, headers=admin_headers)
    assert response.status_code == 201, response.text
    reward: dict[str, Any] = response.json()
    return reward


async def add_codes(
    client: httpx.AsyncClient, admin_headers: dict[str, str], reward_id: str, codes: list[str]
) -> dict[str, Any]:
    response = await client.post(
        f"/admin/v1/rewards/{reward_id}/codes", json={"codes": codes}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def set_rules(app: FastAPI, **tables: RewardsRules | CampaignsRules) -> None:
    registry = app.state.rules_registry
    now = app.state.clock.now()
    rules = registry.at(now).rules
    registry.replace_active_rules(rules.model_copy(update=tables), now)


async def run_reward_jobs(app: FastAPI) -> None:
    worker = Worker(app.state.sessionmaker, app.state.clock, rewards_jobs(app.state.rules_registry))
    await worker.run_due()
