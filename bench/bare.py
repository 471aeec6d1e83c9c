"""S1's limit: a bare Starlette app answering ``GET /healthz`` with the JSON Canopy answers, run
under uvicorn with the same worker count (``python -m bench.bare PORT WORKERS``)."""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/healthz", healthz)])

if __name__ == "__main__":
    uvicorn.run(
        "bench.bare:app",
        host="127.0.0.1",
        port=int(sys.argv[1]),
        workers=int(sys.argv[2]),
        access_log=False,
        log_level="warning",
        server_header=False,
    )
