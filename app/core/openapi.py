"""The OpenAPI document as SDK generators read it: operation ids named for people
(``collectOwnForest``, not ``collect_v1_forest_collect_post``) and one tag per audience, so a
mobile team generates an ``AppApi`` and never sees the operators' endpoints.

Ids are chosen here, in one place, by method and path (the contract's paths do not move when the
code behind them does); a route not listed gets its endpoint function's name in camelCase."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

OPERATION_IDS: dict[str, str] = {
    # operations
    "GET /healthz": "checkHealth",
    "GET /readyz": "checkReadiness",
    "GET /metrics": "getMetrics",
    # accounts
    "POST /v1/auth/register": "register",
    "POST /v1/auth/token": "signIn",
    "POST /v1/auth/refresh": "refreshTokens",
    "POST /v1/auth/logout": "signOut",
    "GET /v1/me": "getMe",
    "PATCH /v1/me": "updateMe",
    "DELETE /v1/me": "eraseMe",
    "POST /v1/me/password": "changePassword",
    "GET /v1/me/export": "exportMyData",
    # energy
    "POST /v1/activities": "reportActivity",
    "POST /v1/activities/batch": "reportActivities",
    "PUT /v1/steps/{day}": "recordSteps",
    "GET /v1/forest": "getOwnForest",
    "POST /v1/forest/collect": "collectOwnForest",
    "GET /v1/energy/ledger": "listMyLedgerEntries",
    "POST /partner/v1/activities": "reportPartnerActivity",
    "POST /partner/v1/activities/batch": "reportPartnerActivities",
    # the social game
    "POST /v1/friend-requests": "sendFriendRequest",
    "GET /v1/friend-requests": "listFriendRequests",
    "POST /v1/friend-requests/{request_id}/accept": "acceptFriendRequest",
    "POST /v1/friend-requests/{request_id}/decline": "declineFriendRequest",
    "GET /v1/friends": "listFriends",
    "DELETE /v1/friends/{user_id}": "removeFriend",
    "POST /v1/blocks/{user_id}": "blockUser",
    "DELETE /v1/blocks/{user_id}": "unblockUser",
    "GET /v1/friends/{user_id}/forest": "getFriendForest",
    "POST /v1/friends/{user_id}/collect": "collectFriendForest",
    "POST /v1/friends/{user_id}/water": "waterFriend",
    "GET /v1/props": "listProps",
    "POST /v1/props/{prop_type}/use": "useProp",
    "POST /v1/props/{prop_type}/buy": "buyProp",
    "GET /v1/feed": "getFeed",
    "GET /v1/leaderboards/friends": "getFriendsLeaderboard",
    # playing together
    "POST /v1/friends/{user_id}/revive": "reviveFriendBall",
    "GET /v1/friends/{user_id}/revivable": "listRevivableBalls",
    "GET /v1/games/energy-rain": "getEnergyRainToday",
    "POST /v1/games/energy-rain": "startEnergyRain",
    "POST /v1/games/energy-rain/{session_id}/settle": "settleEnergyRain",
    "POST /v1/games/energy-rain/grant": "grantEnergyRainPlay",
    "GET /v1/groves": "listGroves",
    "POST /v1/groves": "createGrove",
    "GET /v1/groves/{grove_id}": "getGrove",
    "POST /v1/groves/{grove_id}/invite": "inviteToGrove",
    "POST /v1/groves/{grove_id}/join": "joinGrove",
    "POST /v1/groves/{grove_id}/contribute": "contributeToGrove",
    "POST /v1/groves/{grove_id}/leave": "leaveGrove",
    "GET /v1/groves/{grove_id}/certificate": "getGroveCertificate",
    # planting
    "GET /v1/catalog": "getCatalog",
    "POST /v1/plantings": "createPlanting",
    "GET /v1/plantings": "listPlantings",
    "GET /v1/plantings/{planting_id}": "getPlanting",
    "GET /v1/plantings/{planting_id}/certificate": "getPlantingCertificate",
    "GET /v1/stats": "getStats",
    # partners
    "GET /partner/v1/me": "getPartnerSelf",
    "GET /partner/v1/orders": "listPartnerOrders",
    "GET /partner/v1/orders/{order_id}": "getPartnerOrder",
    "POST /partner/v1/orders/{order_id}/acknowledge": "acknowledgeOrder",
    "POST /partner/v1/orders/{order_id}/reports": "reportPlanting",
    # operators
    "GET /admin/v1/ledger/check": "checkLedger",
    "POST /admin/v1/props/grant": "grantProps",
    "GET /admin/v1/rules": "listRulesVersions",
    "POST /admin/v1/rules": "publishRules",
    "GET /admin/v1/rules/{version}": "getRulesVersion",
    "POST /admin/v1/rules/validate": "validateRules",
    "GET /admin/v1/audit": "listAuditEntries",
    "GET /admin/v1/partners": "listPartners",
    "POST /admin/v1/partners": "createPartner",
    "POST /admin/v1/partners/{partner_id}/rotate-key": "rotatePartnerKey",
    "POST /admin/v1/catalog": "createCatalogItem",
    "PATCH /admin/v1/catalog/{item_id}": "updateCatalogItem",
    "POST /admin/v1/orders/batch": "cutOrders",
    "GET /admin/v1/orders": "listOrders",
    "GET /admin/v1/orders/{order_id}": "getOrder",
    "POST /admin/v1/orders/{order_id}/verify": "verifyOrder",
    "POST /admin/v1/orders/{order_id}/cancel": "cancelOrder",
    "GET /admin/v1/webhook-deliveries": "listWebhookDeliveries",
    "POST /admin/v1/webhook-deliveries/{delivery_id}/retry": "retryWebhookDelivery",
    # beyond trees: the carbon account, rewards, campaigns
    "GET /v1/me/carbon": "getMyCarbonAccount",
    "GET /v1/me/carbon/statement": "getMyCarbonStatement",
    "GET /v1/rewards": "listRewards",
    "POST /v1/rewards/{reward_id}/redeem": "redeemReward",
    "GET /v1/redemptions": "listMyRedemptions",
    "GET /partner/v1/redemptions": "listPartnerRedemptions",
    "POST /partner/v1/redemptions/{redemption_id}/fulfil": "fulfilRedemption",
    "POST /partner/v1/redemptions/{redemption_id}/fail": "failRedemption",
    "POST /admin/v1/rewards": "createReward",
    "GET /admin/v1/rewards": "listAllRewards",
    "PATCH /admin/v1/rewards/{reward_id}": "updateReward",
    "POST /admin/v1/rewards/{reward_id}/codes": "addRewardCodes",
    "GET /v1/campaigns": "listCampaigns",
    "GET /v1/campaigns/{campaign_id}": "getCampaign",
    "POST /v1/campaigns/{campaign_id}/donate": "donateToCampaign",
    "GET /v1/campaigns/{campaign_id}/leaderboard": "getCampaignLeaderboard",
    "POST /admin/v1/campaigns": "createCampaign",
}

AUDIENCES: list[dict[str, str]] = [
    {"name": "app", "description": "Mobile apps, for their users (a user's bearer access token)."},
    {"name": "partner", "description": "Activity and NGO partners (a partner API key)."},
    {"name": "admin", "description": "Operators and designers (the admin token)."},
    {"name": "public", "description": "Open to anyone, no credentials."},
    {"name": "operations", "description": "Health, readiness and metrics for the platform."},
]
_PUBLIC = {"/v1/stats"}
_OPERATIONS = {"/healthz", "/readyz", "/metrics"}


def audience(path: str) -> str:
    """The one tag of an operation: who calls it."""
    if path in _OPERATIONS:
        return "operations"
    if path in _PUBLIC:
        return "public"
    if path.startswith("/admin/"):
        return "admin"
    if path.startswith("/partner/"):
        return "partner"
    return "app"


def camel_case(name: str) -> str:
    head, *rest = [p for p in re.split(r"[^A-Za-z0-9]+", name) if p]
    return head[:1].lower() + head[1:] + "".join(p[:1].upper() + p[1:] for p in rest)


def operation_id(route: Any) -> str:
    """FastAPI's ``generate_unique_id_function``: the listed id, else the endpoint's name."""
    for method in sorted(getattr(route, "methods", None) or ()):
        named = OPERATION_IDS.get(f"{method} {route.path}")
        if named:
            return named
    return camel_case(getattr(route, "name", "") or route.endpoint.__name__)


# Errors are RFC 9457 problem+json (app.core.errors); a 422 adds the ``errors`` list. FastAPI
# documents its own ``HTTPValidationError`` as application/json instead: replaced below, so the
# document says what the API answers (schemathesis checks every response against it).
PROBLEM_SCHEMAS: dict[str, Any] = {
    "ProblemError": {
        "title": "ProblemError",
        "type": "object",
        "required": ["loc", "msg"],
        "properties": {
            # a request field's path (["body", "handle"]); a rules file's dotted key path
            "loc": {
                "anyOf": [
                    {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    {"type": "string"},
                ]
            },
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
    },
    "Problem": {
        "title": "Problem",
        "description": "RFC 9457 problem details; ``code`` is the machine-readable error.",
        "type": "object",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string"},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/ProblemError"}},
        },
    },
}
_PROBLEM_CONTENT = {
    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
}


def problem_responses(schema: dict[str, Any]) -> None:
    """Document every 422 as ``application/problem+json`` (the :data:`PROBLEM_SCHEMAS`)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            response = (
                operation.get("responses", {}).get("422") if isinstance(operation, dict) else None
            )
            if response is not None:
                response["content"] = dict(_PROBLEM_CONTENT)
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(PROBLEM_SCHEMAS)


def tag_by_audience(app: FastAPI) -> None:
    """Give every operation in ``app``'s OpenAPI document its audience as its only tag (and
    its error responses as problem+json, :func:`problem_responses`)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                if isinstance(operation, dict) and "operationId" in operation:
                    operation["tags"] = [audience(path)]
        schema["tags"] = AUDIENCES
        problem_responses(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
