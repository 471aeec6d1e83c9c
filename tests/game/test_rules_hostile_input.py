"""Hostile rules bodies and path values answer 4xx, never 500."""

from __future__ import annotations

import httpx
import pytest

from app.rules.loader import MAX_NESTING, nesting_depth, validate_rules_text
from tests.helpers import assert_problem

TOML = {"Content-Type": "application/toml"}


def nested(levels: int) -> str:
    return "a = " + "[" * levels + "1" + "]" * levels + "\n"


class TestNestedToml:
    @pytest.mark.parametrize("levels", [8, 20_000])
    async def test_nested_arrays_are_invalid_rules_not_a_crash(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], levels: int
    ) -> None:
        for path in ("/admin/v1/rules/validate", "/admin/v1/rules"):
            response = await client.post(
                path, content=nested(levels), headers={**admin_headers, **TOML}
            )
            assert response.status_code in (200, 422), response.text
            body = response.json()
            errors = body["errors"]
            assert errors and (body.get("valid") is False or body["code"] == "invalid_rules")
        if levels > MAX_NESTING:
            assert any("nests deeper" in e["msg"] for e in errors)

    def test_depth_ignores_brackets_in_strings_and_comments(self) -> None:
        text = "version = \"[[[[[[[\"\n# [[[[[[[[[[\nlist = [[1], [2]]\ns = '''{{{{'''\n"
        assert nesting_depth(text) == 2

    def test_an_oversized_file_is_refused_by_the_check(self) -> None:
        issues = validate_rules_text("# " + "x" * 300_000)
        assert [i.msg for i in issues] == ["is larger than 262144 bytes"]


class TestPathIntegers:
    @pytest.mark.parametrize("version", ["22568334633", "0", "-1", "99999999999999999999"])
    async def test_out_of_range_versions_are_422(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], version: str
    ) -> None:
        response = await client.get(f"/admin/v1/rules/{version}", headers=admin_headers)
        assert_problem(response, 422, "validation_error")

    async def test_an_unknown_version_in_range_is_404(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        response = await client.get("/admin/v1/rules/2147483647", headers=admin_headers)
        assert_problem(response, 404, "not_found")
