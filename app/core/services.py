"""Which PostgreSQL and Redis this process uses: the configured ones, or the embedded default."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from app.config import Settings
from app.core.embedded import EmbeddedServer, ensure_postgres, ensure_redis
from app.core.redis import ClusterURL, is_cluster_url


@dataclass
class Services:
    database_url: str
    redis_url: str
    database_label: str
    redis_label: str
    embedded: list[EmbeddedServer] = field(default_factory=list)

    def describe(self) -> str:
        return f"database: {self.database_label}; redis: {self.redis_label}"

    def stop_embedded(self) -> None:
        for server in reversed(self.embedded):
            server.stop()
        self.embedded.clear()


def redact(url: str) -> str:
    """A URL fit for a log line: scheme, host, port and path, never the password."""
    if is_cluster_url(url):
        cluster = ClusterURL.parse(url)
        user = f"{cluster.username}@" if cluster.username else ""
        nodes = ",".join(f"{host}:{port}" for host, port in cluster.nodes)
        return f"{url.partition('://')[0]}://{user}{nodes}"
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    # a unix-socket PostgreSQL URL names its socket directory in ?host=
    socket = next((q for q in parts.query.split("&") if q.startswith("host=")), "")
    return f"{parts.scheme}://{user}{host}{port}{parts.path}" + (f"?{socket}" if socket else "")


def resolve_services(settings: Settings) -> Services:
    """Use ``CANOPY_DATABASE_URL``/``CANOPY_REDIS_URL`` when set, else start (or attach to) the
    embedded PostgreSQL/Redis kept under ``CANOPY_DATA_DIR``."""
    embedded: list[EmbeddedServer] = []
    try:
        if settings.database_url:
            db_url, db_label = settings.database_url, redact(settings.database_url)
        else:
            pg = ensure_postgres(settings.data_dir)
            embedded.append(pg)
            db_url, db_label = pg.url, pg.description
        if settings.redis_url:
            redis_url, redis_label = settings.redis_url, redact(settings.redis_url)
        else:
            rd = ensure_redis(settings.data_dir)
            embedded.append(rd)
            redis_url, redis_label = rd.url, rd.description
    except BaseException:
        for server in reversed(embedded):
            server.stop()
        raise
    return Services(db_url, redis_url, db_label, redis_label, embedded)
