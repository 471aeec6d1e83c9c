"""``python -m app.core.healthcheck``: the container's health check. It asks ``/healthz`` on
the port the service was told to use (``CANOPY_PORT``, as ``canopy serve`` reads it), so
changing the port does not turn a healthy container unhealthy. Standard library only: it runs
every few seconds and must start fast."""

from __future__ import annotations

import os
import sys
import urllib.request


def healthy(port: str | None = None, timeout: float = 2.0) -> bool:
    port = port or os.environ.get("CANOPY_PORT") or "8000"
    url = f"http://127.0.0.1:{int(port)}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(0 if healthy() else 1)
