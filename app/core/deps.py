"""Dependency aliases for what lives on ``app.state``: settings, clock, keys, rules, limiter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from app.config import Settings
from app.core.clock import Clock
from app.core.ratelimit import RateLimiter
from app.core.security import Keys

if TYPE_CHECKING:
    from app.rules.registry import ActiveRules, RulesRegistry


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def get_keys(request: Request) -> Keys:
    keys: Keys = request.app.state.keys
    return keys


async def get_registry(request: Request) -> RulesRegistry:
    registry: RulesRegistry = request.app.state.rules_registry
    return registry


async def get_rules(request: Request) -> ActiveRules:
    """The rules version in force now."""
    registry: RulesRegistry = request.app.state.rules_registry
    return registry.at(request.app.state.clock.now())


async def get_rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
ClockDep = Annotated[Clock, Depends(get_clock)]
KeysDep = Annotated[Keys, Depends(get_keys)]
RulesDep = Annotated["ActiveRules", Depends(get_rules)]
RegistryDep = Annotated["RulesRegistry", Depends(get_registry)]
LimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]


def bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        return None
    return credentials.credentials
