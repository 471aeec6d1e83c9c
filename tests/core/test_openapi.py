"""The OpenAPI document as SDK generators read it: operation ids for people, one tag per
audience."""

from __future__ import annotations

import re
from typing import Any

import pytest

from app.config import Settings
from app.core.openapi import AUDIENCES, OPERATION_IDS, audience, camel_case
from app.main import create_app

CAMEL = re.compile(r"^[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)*$")
# what FastAPI's default ids look like: the function name, the path and the method, underscored
GENERATED = re.compile(r"_(?:get|post|put|patch|delete)$|_v1_|__")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    schema: dict[str, Any] = create_app(Settings()).openapi()
    return schema


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
    ]


class TestOperationIds:
    def test_every_id_is_unique_camel_case_and_not_generated(
        self, document: dict[str, Any]
    ) -> None:
        ids = [op["operationId"] for _, _, op in operations(document)]
        assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
        for method, path, op in operations(document):
            operation_id = op["operationId"]
            assert CAMEL.match(operation_id), (method, path, operation_id)
            assert not GENERATED.search(operation_id), (method, path, operation_id)

    def test_every_contract_route_is_named_by_hand(self, document: dict[str, Any]) -> None:
        # routes added later fall back to their function's name in camelCase until named here
        named = sum(f"{m} {p}" in OPERATION_IDS for m, p, _ in operations(document))
        assert named == len(OPERATION_IDS)

    def test_the_morning_routine_reads_well(self, document: dict[str, Any]) -> None:
        by_route = {f"{m} {p}": op["operationId"] for m, p, op in operations(document)}
        assert by_route["GET /v1/forest"] == "getOwnForest"
        assert by_route["POST /v1/forest/collect"] == "collectOwnForest"
        assert by_route["GET /v1/friends"] == "listFriends"
        assert by_route["POST /v1/friends/{user_id}/collect"] == "collectFriendForest"

    def test_every_listed_route_exists(self, document: dict[str, Any]) -> None:
        present = {f"{m} {p}" for m, p, _ in operations(document)}
        assert set(OPERATION_IDS) <= present, set(OPERATION_IDS) - present

    def test_body_schemas_are_named_after_the_ids(self, document: dict[str, Any]) -> None:
        bodies = [k for k in document["components"]["schemas"] if k.startswith("Body_")]
        assert not [b for b in bodies if "_v1_" in b], bodies

    def test_an_unlisted_route_gets_its_function_name_in_camel_case(self) -> None:
        assert camel_case("update_partner") == "updatePartner"
        assert camel_case("ledger_check") == "ledgerCheck"


class TestAudienceTags:
    def test_one_tag_per_operation_by_audience(self, document: dict[str, Any]) -> None:
        names = {a["name"] for a in AUDIENCES}
        assert [t["name"] for t in document["tags"]] == [a["name"] for a in AUDIENCES]
        for _, path, op in operations(document):
            assert op["tags"] == [audience(path)] and op["tags"][0] in names

    def test_audiences(self) -> None:
        assert audience("/v1/forest") == "app"
        assert audience("/v1/auth/token") == "app"
        assert audience("/partner/v1/orders") == "partner"
        assert audience("/admin/v1/rules") == "admin"
        assert audience("/v1/stats") == "public"
        assert audience("/healthz") == "operations"

    def test_console_pages_stay_out_of_the_document(self, document: dict[str, Any]) -> None:
        assert not [p for p in document["paths"] if p.startswith("/console")]


class TestErrorResponses:
    def test_every_422_is_documented_as_problem_json(self, document: dict[str, Any]) -> None:
        # the API answers RFC 9457 problem+json, never FastAPI's {"detail": [...]}
        documented = [
            (m, p, op["responses"]["422"])
            for m, p, op in operations(document)
            if "422" in op["responses"]
        ]
        assert documented
        for method, path, response in documented:
            assert list(response["content"]) == ["application/problem+json"], (method, path)
        schemas = document["components"]["schemas"]
        assert "HTTPValidationError" not in schemas
        assert {"type", "title", "status", "detail", "code"} <= set(schemas["Problem"]["required"])
