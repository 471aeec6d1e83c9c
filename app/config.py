"""All configuration: one pydantic-settings class, environment prefix ``CANOPY_``."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from app.core.durations import parse_duration
from app.core.redis import URL_SCHEMES, ClusterURL, is_cluster_url

DEFAULT_RETRY_SCHEDULE = "5s,5m,30m,2h,5h,10h,14h,20h,24h"


def normalize_database_url(url: str) -> str:
    """Accept ``postgresql://``/``postgres://`` and use the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("must be a postgresql:// or postgresql+asyncpg:// URL")


MIN_SECRET_BYTES = 32
ENV_PREFIX = "CANOPY_"


class FileVariablesSource(PydanticBaseSettingsSource):
    """``CANOPY_X_FILE=/run/secrets/x`` sets ``CANOPY_X`` from that file's content (Docker and
    Kubernetes secrets), for every setting. Setting both is refused: which one wins would be a
    guess."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            variable = f"{ENV_PREFIX}{name.upper()}"
            path = os.environ.get(f"{variable}_FILE")
            if not path:
                continue
            if os.environ.get(variable):
                raise ValueError(f"set {variable} or {variable}_FILE, not both")
            try:
                values[name] = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"{variable}_FILE: cannot read {path}: {exc.strerror}") from None
        return values


def _secret_list(value: object) -> object:
    """Several secrets in one variable: separated by commas, spaces or newlines (a file with
    one per line works as it is)."""
    if isinstance(value, str):
        return [part for part in re.split(r"[\s,]+", value) if part]
    return value


class Settings(BaseSettings):
    """Canopy's settings. Every contract variable is here; the rest have safe defaults."""

    # an empty variable counts as unset (compose's ${X:-} passes optional secrets as "")
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            FileVariablesSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    # --- the contract's variables -------------------------------------------------------------
    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset → embedded PostgreSQL under data_dir"
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL (redis://, rediss://, unix://, or redis+cluster://host:port,... "
        "for a Redis Cluster); unset → embedded Redis under data_dir",
    )
    data_dir: Path = Field(default=Path(".canopy"), description="where embedded data is kept")
    rules: Path | None = Field(default=None, description="rules file; unset → packaged default")
    admin_token: SecretStr | None = Field(default=None, description="admin API bearer token")
    jwt_secret: SecretStr | None = Field(
        default=None, description="JWT signing secret; unset → generated once into data_dir"
    )
    webhook_allow_private: bool = False
    webhook_retry_schedule: Annotated[list[timedelta], NoDecode] = Field(
        default_factory=lambda: [parse_duration(p) for p in DEFAULT_RETRY_SCHEDULE.split(",")]
    )

    # --- more ---------------------------------------------------------------------------------
    jwt_previous_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="older JWT signing secrets (comma-separated): tokens they signed still "
        "verify, nothing new is signed with them",
    )
    encryption_key: SecretStr | None = Field(
        default=None,
        description="key for secrets kept encrypted at rest (webhook secrets, stored replies); "
        "unset → derived from the JWT secret (set it: then the two are independent)",
    )
    encryption_previous_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="older encryption keys (comma-separated): still decrypt, never encrypt; "
        "`canopy keys rotate` re-encrypts what they hold with CANOPY_ENCRYPTION_KEY",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="bearer token required on GET /metrics (unset: open)"
    )
    argon2_time_cost: int = Field(default=3, ge=1, description="argon2id passes")
    argon2_memory_kib: int = Field(default=65536, ge=8, description="argon2id memory (KiB)")
    access_token_ttl: timedelta = timedelta(minutes=15)
    refresh_token_ttl: timedelta = timedelta(days=30)
    login_max_age: timedelta = Field(
        default=timedelta(days=90),
        description="a login ends this long after its sign-in, however often it is refreshed",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    idempotency_ttl: timedelta = timedelta(hours=24)
    in_process_worker: bool = Field(
        default=False, description="run background jobs inside the API process (canopy serve)"
    )
    raw_retention: timedelta = Field(
        default=timedelta(days=90),
        description="raw activity attributes and step sources older than this are purged",
    )
    rules_refresh_seconds: float = Field(
        default=10.0, ge=0, description="backstop poll for newly published rules (0: off)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    db_max_connections: int = Field(
        default=80,
        ge=1,
        description="PostgreSQL connections one `canopy serve` may hold, all its processes "
        "together; each process's pools are sized from its share (app/core/pools.py)",
    )
    processes: int = Field(
        default=1,
        ge=1,
        description="processes sharing CANOPY_DB_MAX_CONNECTIONS (canopy serve sets it to "
        "--workers; set it when running uvicorn yourself)",
    )
    db_pool_size: int | None = Field(
        default=None, ge=1, description="SQLAlchemy pool per process (unset: from the budget)"
    )
    db_max_overflow: int | None = Field(
        default=None, ge=0, description="SQLAlchemy overflow per process (unset: from the budget)"
    )
    hot_pool_size: int | None = Field(
        default=None,
        ge=1,
        description="asyncpg connections per process for the hot paths (unset: from the budget)",
    )
    revocation_poll_seconds: float = Field(
        default=1.0, ge=0, description="backstop reload of revoked logins (0: notifications only)"
    )

    @field_validator("jwt_previous_secrets", "encryption_previous_keys", mode="before")
    @classmethod
    def _secret_lists(cls, value: object) -> object:
        return _secret_list(value)

    @field_validator(
        "admin_token",
        "jwt_secret",
        "encryption_key",
        "metrics_token",
        "jwt_previous_secrets",
        "encryption_previous_keys",
    )
    @classmethod
    def _long_enough(
        cls, value: SecretStr | list[SecretStr] | None, info: ValidationInfo
    ) -> SecretStr | list[SecretStr] | None:
        # a short bearer token or signing key can be guessed offline or by brute force
        for secret in value if isinstance(value, list) else [value]:
            if secret is not None and len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
                name = f"{ENV_PREFIX}{(info.field_name or '').upper()}"
                raise ValueError(
                    f"{name} must be at least {MIN_SECRET_BYTES} bytes (each); generate one "
                    "with python -c 'import secrets; print(secrets.token_urlsafe(48))'"
                )
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return normalize_database_url(value) if value else None

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(URL_SCHEMES):
            raise ValueError(
                "must be a redis://, rediss://, unix:// or redis+cluster://host:port,... URL"
            )
        if value and is_cluster_url(value):
            ClusterURL.parse(value)  # a clear error at startup rather than at the first command
        return value or None

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _retry_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p for p in (p.strip() for p in value.split(",")) if p]
            if not parts:
                raise ValueError("needs at least one delay")
            return [parse_duration(p) for p in parts]
        return value

    @field_validator(
        "access_token_ttl",
        "refresh_token_ttl",
        "login_max_age",
        "idempotency_ttl",
        "raw_retention",
        mode="before",
    )
    @classmethod
    def _durations(cls, value: object) -> object:
        if isinstance(value, str | int) and not isinstance(value, bool):
            return parse_duration(value)
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
