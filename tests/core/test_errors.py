"""Every kind of bad input answers problem+json, never a 500."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers import PASSWORD, assert_problem


class TestProblemJson:
    async def test_unknown_route_is_404(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/nothing-here"), 404, "not_found")

    async def test_wrong_method_is_405(self, client: httpx.AsyncClient) -> None:
        response = await client.delete("/v1/auth/register")
        assert_problem(response, 405, "method_not_allowed")
        assert "POST" in response.headers["allow"]

    @pytest.mark.parametrize("body", [b"{", b"not json", b'{"handle": "alice",}', b"\xff\xfe"])
    async def test_malformed_json_is_400(self, client: httpx.AsyncClient, body: bytes) -> None:
        response = await client.post(
            "/v1/auth/register", content=body, headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 400, "invalid_json")

    async def test_wrong_json_type_is_422(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/auth/register", json=["handle", "alice"])
        assert_problem(response, 422, "validation_error")

    async def test_empty_body_is_422(self, client: httpx.AsyncClient) -> None:
        body = assert_problem(await client.post("/v1/auth/register"), 422, "validation_error")
        assert body["errors"][0]["loc"] == ["body"]

    async def test_oversized_body_is_413(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        limit = app.state.settings.max_body_bytes
        big = b'{"handle": "alice", "password": "' + b"x" * limit + b'"}'
        response = await client.post(
            "/v1/auth/register", content=big, headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 413, "payload_too_large")

    async def test_oversized_chunked_body_is_413(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        limit = app.state.settings.max_body_bytes

        async def chunks():  # type: ignore[no-untyped-def]
            yield b'{"handle": "alice", "password": "'
            for _ in range(limit // 65536 + 2):
                yield b"x" * 65536
            yield b'"}'

        response = await client.post(
            "/v1/auth/register", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 413, "payload_too_large")

    async def test_unexpected_error_is_500_without_internals(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        @app.get("/boom-for-test")
        async def boom() -> None:
            raise RuntimeError("secret internals: password=hunter2")

        response = await client.get("/boom-for-test")
        body = assert_problem(response, 500, "internal_error")
        assert "hunter2" not in response.text and "Traceback" not in response.text
        assert body["detail"] == "Something went wrong on our side."

    async def test_problem_type_is_a_uri_naming_the_code(self, client: httpx.AsyncClient) -> None:
        await client.post("/v1/auth/register", json={"handle": "alice", "password": PASSWORD})
        body = (
            await client.post("/v1/auth/register", json={"handle": "alice", "password": PASSWORD})
        ).json()
        assert body["type"].endswith("/handle_taken")
        assert body["title"] and body["detail"]
