"""The app's one async Redis client. Redis holds rate limits, leaderboards, caches and fan-out;
nothing in it is the only copy of anything, so losing it never loses data.

``CANOPY_REDIS_URL`` names a single server (``redis://``, ``rediss://``, ``unix://``) or a Redis
Cluster (``redis+cluster://[user:password@]host:port[,host:port...]``, ``rediss+cluster://`` for
TLS): the listed nodes are only where the client starts, it learns the others from the cluster.
Keys that one multi-key command, transaction or script touches share a hash tag (``{...}``), so
they live in one slot; see :func:`app.game.leaderboards.service.board_key`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import Depends, Request
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode

#: A standalone client or a cluster client: the commands Canopy uses exist on both.
AnyRedis = Redis | RedisCluster

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
URL_SCHEMES = ("redis://", "rediss://", "unix://", *CLUSTER_SCHEMES)

_OPTIONS: dict[str, Any] = {
    "decode_responses": False,
    "socket_connect_timeout": 2,
    "socket_timeout": 2,
    "health_check_interval": 30,
}


@dataclass(frozen=True)
class ClusterURL:
    """A parsed ``redis+cluster://`` URL: the startup nodes and the credentials."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    ssl: bool = False

    @classmethod
    def parse(cls, url: str) -> ClusterURL:
        scheme = next((s for s in CLUSTER_SCHEMES if url.startswith(s)), None)
        if scheme is None:
            raise ValueError("a cluster URL starts with redis+cluster:// or rediss+cluster://")
        rest = url[len(scheme) :]
        auth, _, hosts = rest.rpartition("@")
        hosts, _, db = hosts.partition("/")
        if db.split("?")[0] not in ("", "0"):
            raise ValueError("a Redis Cluster has only database 0")
        username = password = None
        if auth:
            user, colon, secret = auth.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if colon else None
        nodes = []
        for part in hosts.split(","):
            host, colon, port = part.strip().rpartition(":")
            if not colon or not host or not port.isdigit():
                raise ValueError(f"cluster node {part!r} is not host:port")
            nodes.append((host.strip("[]"), int(port)))
        return cls(tuple(nodes), username, password, scheme.startswith("rediss"))

    def client_options(self) -> dict[str, Any]:
        """Credentials and TLS, as keyword arguments of :class:`RedisCluster`."""
        options: dict[str, Any] = {"ssl": self.ssl}
        if self.username:
            options["username"] = self.username
        if self.password is not None:
            options["password"] = self.password
        return options


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def create_redis(url: str) -> AnyRedis:
    """A client for ``url``: :class:`RedisCluster` for a cluster URL, else :class:`Redis`."""
    if is_cluster_url(url):
        parsed = ClusterURL.parse(url)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
            **parsed.client_options(),
            **_OPTIONS,
        )
    return Redis.from_url(url, **_OPTIONS)


async def get_redis(request: Request) -> AnyRedis:
    redis: AnyRedis = request.app.state.redis
    return redis


RedisDep = Annotated[AnyRedis, Depends(get_redis)]
