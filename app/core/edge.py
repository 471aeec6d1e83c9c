"""The one ASGI layer in front of the app: request id, body limit, metrics and the health check.

One plain ASGI class instead of three stacked middlewares: every request passes through it, so it
does the least it can — one header scan, one context variable, cached metric children. ``GET
/healthz`` is answered here, before routing (load balancers call it many times a second, and the
answer needs nothing from the app); it still carries its request id and is counted in the
metrics. The FastAPI route of the same path stays, so the health check is documented in
``/openapi.json``.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from prometheus_client.metrics import Counter as CounterT
from prometheus_client.metrics import Histogram as HistogramT
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PayloadTooLarge, problem_response
from app.core.observability import HTTP_LATENCY, HTTP_REQUESTS, request_id_var

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HEALTHY = b'{"status":"ok"}'
# on every response: no MIME sniffing, no URLs (which may carry ids) leaked as referrers
_SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
# responses that carry tokens, keys or personal data must never sit in a cache (RFC 6749 §5.1)
_NO_STORE = (b"cache-control", b"no-store")
_PRIVATE_PREFIXES = ("/v1/auth/", "/v1/me", "/admin/", "/partner/")
_HEALTH_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", b"15"),
    *_SECURITY_HEADERS,
]


class _Metrics:
    """Children of the request metrics, looked up once per (method, route, status)."""

    def __init__(self) -> None:
        self._count: dict[tuple[str, str, int], CounterT] = {}
        self._latency: dict[tuple[str, str], HistogramT] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        counter = self._count.get(key)
        if counter is None:
            counter = self._count[key] = HTTP_REQUESTS.labels(method, route, str(status))
        counter.inc()
        latency = self._latency.get(key[:2])
        if latency is None:
            latency = self._latency[key[:2]] = HTTP_LATENCY.labels(method, route)
        latency.observe(seconds)


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = _Metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        incoming: bytes | None = None
        declared: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                incoming = value
            elif key == b"content-length":
                declared = value
        rid = incoming.decode("latin-1") if incoming is not None else ""
        if not _VALID_REQUEST_ID.match(rid):
            rid = uuid.uuid4().hex
        rid_header = (b"x-request-id", rid.encode())
        method: str = scope["method"]

        if scope["path"] == "/healthz" and method in ("GET", "HEAD"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*_HEALTH_HEADERS, rid_header],
                }
            )
            await send({"type": "http.response.body", "body": _HEALTHY if method == "GET" else b""})
            self.metrics.observe(method, "/healthz", 200, time.perf_counter() - start)
            return

        token = request_id_var.set(rid)
        status = 500
        extra = [rid_header, *_SECURITY_HEADERS]
        if scope["path"].startswith(_PRIVATE_PREFIXES):
            extra.append(_NO_STORE)

        async def send_edge(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            if declared is not None and _too_large(declared, self.max_bytes):
                err = PayloadTooLarge(f"The request body exceeds {self.max_bytes} bytes")
                response = problem_response(err.status, err.code, err.title, err.detail)
                await response(scope, receive, send_edge)
                return
            await self.app(scope, self._limited(receive), send_edge)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(method, template, status, time.perf_counter() - start)
            request_id_var.reset(token)

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that refuses a body growing past the limit (chunked uploads)."""
        received = 0
        limit = self.max_bytes

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # raised inside the route, where the error handlers turn it into a 413
                    raise PayloadTooLarge(f"The request body exceeds {limit} bytes")
            return message

        return counting_receive


def _too_large(declared: bytes, limit: int) -> bool:
    try:
        return int(declared) > limit
    except ValueError:
        return False  # a malformed header is the server's (uvicorn's) to refuse
