"""Console sign-in: an admin token or a partner API key exchanged for a short-lived signed cookie,
and the CSRF token every form carries.

- The cookie holds no secret: a random session id, the role, the partner id or the operator's
  name, times, and a fingerprint of the credential it was made from. It is signed (HMAC-SHA256
  under a key derived from the JWT secret), ``HttpOnly``, ``SameSite=Strict``, limited to
  ``/console`` and ``Secure`` unless the console is opened on localhost.
- A session ends after :data:`IDLE` without a request, :data:`ABSOLUTE` after sign-in, on
  sign-out (the id is remembered as ended in Redis until it would have expired anyway, and in
  the signing-out process too, should Redis be unreachable), or when
  its credential changes: a rotated partner key or a new ``CANOPY_ADMIN_TOKEN`` ends every
  session made with the old one.
- The CSRF token is an HMAC of the session id, so it changes with every sign-in; browsers that
  have not signed in get an anonymous session so the sign-in form is protected too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.db import SessionDep
from app.core.errors import CanopyError, NotFound
from app.core.security import Keys
from app.partners.models import Partner

logger = logging.getLogger("canopy.console")

COOKIE = "canopy_console"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf_token"
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=8)
ANONYMOUS_IDLE = timedelta(hours=2)  # long enough to fill the sign-in form at leisure
_ENDED = "canopy:console:ended:"
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}

Role = Literal["anonymous", "operator", "partner"]


class SignInRequired(CanopyError):
    """No (live) console session: the page answers with a redirect to the sign-in form."""

    status, code, title = 401, "sign_in_required", "Please sign in"


class CsrfRefused(CanopyError):
    status, code, title = 403, "csrf_refused", "This form has expired"


@dataclass(frozen=True)
class PortalPartner:
    """The signed-in partner (plain values: nothing here reloads from the database)."""

    id: uuid.UUID
    name: str
    scopes: list[str]


@dataclass(frozen=True)
class ConsoleSession:
    sid: str
    role: Role
    issued_at: int
    seen_at: int
    partner_id: str | None = None
    operator: str | None = None
    fingerprint: str = ""

    @property
    def actor(self) -> str:
        """Who acted, for the audit log."""
        return f"console:{self.operator}" if self.operator else "console"

    def signed_in(self) -> bool:
        return self.role != "anonymous"


def _console_key(keys: Keys) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"canopy-console-session-v1"
    ).derive(keys.jwt_secret.encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Signer:
    """Signs cookies and derives CSRF tokens and credential fingerprints; one per app."""

    key: bytes

    @classmethod
    def for_keys(cls, keys: Keys) -> Signer:
        return cls(_console_key(keys))

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self.key, purpose.encode() + b"\0" + data, hashlib.sha256).digest()

    def dumps(self, session: ConsoleSession) -> str:
        payload = orjson.dumps(
            {
                "v": 1,
                "sid": session.sid,
                "role": session.role,
                "iat": session.issued_at,
                "seen": session.seen_at,
                "pid": session.partner_id,
                "op": session.operator,
                "fp": session.fingerprint,
            }
        )
        return f"{_b64(payload)}.{_b64(self._mac('cookie', payload))}"

    def loads(self, cookie: str) -> ConsoleSession | None:
        body, _, mac = cookie.partition(".")
        try:
            payload = _unb64(body)
            if not hmac.compare_digest(_unb64(mac), self._mac("cookie", payload)):
                return None
            data: dict[str, Any] = orjson.loads(payload)
            if data.get("v") != 1 or data["role"] not in ("anonymous", "operator", "partner"):
                return None
            return ConsoleSession(
                sid=str(data["sid"]),
                role=data["role"],
                issued_at=int(data["iat"]),
                seen_at=int(data["seen"]),
                partner_id=data.get("pid"),
                operator=data.get("op"),
                fingerprint=str(data.get("fp") or ""),
            )
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            return None

    def csrf_token(self, session: ConsoleSession) -> str:
        return _b64(self._mac("csrf", session.sid.encode()))

    def fingerprint(self, credential: str) -> str:
        """Names a credential without revealing it: a changed credential, another print."""
        return self._mac("credential", credential.encode()).hex()[:32]


def signer(request: Request) -> Signer:
    state = request.app.state
    found: Signer | None = getattr(state, "console_signer", None)
    if found is None:
        found = state.console_signer = Signer.for_keys(state.keys)
    return found


def new_session(
    now: datetime,
    role: Role = "anonymous",
    *,
    partner_id: str | None = None,
    operator: str | None = None,
    fingerprint: str = "",
) -> ConsoleSession:
    stamp = int(now.timestamp())
    return ConsoleSession(
        sid=secrets.token_urlsafe(18),
        role=role,
        issued_at=stamp,
        seen_at=stamp,
        partner_id=partner_id,
        operator=operator,
        fingerprint=fingerprint,
    )


def operator_fingerprint(sign: Signer, settings: Settings) -> str | None:
    if settings.admin_token is None:
        return None
    return sign.fingerprint("admin:" + settings.admin_token.get_secret_value())


def partner_fingerprint(sign: Signer, partner: Partner) -> str:
    return sign.fingerprint("partner:" + partner.api_key_hash)


def _alive(session: ConsoleSession, now: datetime) -> bool:
    stamp = now.timestamp()
    idle = ANONYMOUS_IDLE if session.role == "anonymous" else IDLE
    return stamp - session.seen_at <= idle.total_seconds() and (
        stamp - session.issued_at <= ABSOLUTE.total_seconds()
    )


# sign-outs seen by this process, kept also here so that they hold while Redis is unreachable
_ended_here: dict[str, float] = {}
_ENDED_HERE_MAX = 10_000


async def _ended(redis: Redis, sid: str, now: float) -> bool:
    if _ended_here.get(sid, 0.0) > now:
        return True
    try:
        return bool(await redis.exists(_ENDED + sid))
    except Exception:  # Redis down: this process's own sign-outs still count
        logger.warning("console sign-out list unavailable: redis unreachable")
        return False


async def end_session(redis: Redis, session: ConsoleSession, now: datetime) -> None:
    """Sign-out: the session id stops working everywhere, though the browser may keep the
    cookie (remembered until the session would have expired by itself)."""
    until = session.issued_at + ABSOLUTE.total_seconds()
    if len(_ended_here) >= _ENDED_HERE_MAX:
        for sid in [k for k, v in _ended_here.items() if v <= now.timestamp()]:
            del _ended_here[sid]
    _ended_here[session.sid] = until
    try:
        await redis.set(_ENDED + session.sid, b"1", ex=max(1, int(until - now.timestamp()) + 1))
    except Exception:
        logger.warning("console sign-out kept in this process only: redis unreachable")


async def _credential_still_valid(
    request: Request, db: AsyncSession, session: ConsoleSession
) -> bool:
    sign = signer(request)
    if session.role == "operator":
        expected = operator_fingerprint(sign, request.app.state.settings)
        return expected is not None and hmac.compare_digest(expected, session.fingerprint)
    if session.role == "partner" and session.partner_id:
        try:
            partner = await db.get(Partner, uuid.UUID(session.partner_id))
        except ValueError:
            return False
        if partner is None or partner.disabled_at is not None:
            return False
        request.state.console_partner = PortalPartner(
            partner.id, partner.name, list(partner.scopes)
        )
        return hmac.compare_digest(partner_fingerprint(sign, partner), session.fingerprint)
    return session.role == "anonymous"


async def read_session(request: Request, db: AsyncSession) -> ConsoleSession:
    """This browser's console session: the cookie's if it is live, else a fresh anonymous one.
    The result is kept on ``request.state`` so the response can renew the cookie."""
    cached: ConsoleSession | None = getattr(request.state, "console_session", None)
    if cached is not None:
        return cached
    now = request.app.state.clock.now()
    raw = request.cookies.get(COOKIE)
    session = signer(request).loads(raw) if raw else None
    if session is not None and not _alive(session, now):
        session = None
    if (
        session is not None
        and session.signed_in()
        and (
            await _ended(request.app.state.redis, session.sid, now.timestamp())
            or not await _credential_still_valid(request, db, session)
        )
    ):
        session = None
    unchanged = False
    if session is None:
        session = new_session(now)
    elif now.timestamp() - session.seen_at >= 60:
        session = replace(session, seen_at=int(now.timestamp()))
    else:
        unchanged = True  # the browser's cookie is still good: no need to send it again
    request.state.console_session = session
    request.state.console_session_fresh = unchanged
    return session


def session_of(request: Request) -> ConsoleSession:
    """The session :func:`read_session` found for this request; a new anonymous one when the
    request never got that far (an error before any page dependency ran) — which leaves the
    browser's cookie alone."""
    found: ConsoleSession | None = getattr(request.state, "console_session", None)
    if found is None:
        found = new_session(request.app.state.clock.now())
        request.state.console_session = found
        request.state.console_session_fresh = True
    return found


def replace_session(request: Request, session: ConsoleSession) -> None:
    """Use ``session`` from now on (sign-in, sign-out); the response carries its cookie."""
    request.state.console_session = session
    request.state.console_session_fresh = False


def cookie_is_secure(request: Request) -> bool:
    """Secure everywhere except on plain http to localhost (a proxy in front that rewrites the
    Host header to a loopback address should forward the scheme: X-Forwarded-Proto)."""
    return request.url.scheme == "https" or (request.url.hostname or "") not in _LOCAL_HOSTS


def cookie_header_args(request: Request) -> dict[str, Any]:
    return {
        "key": COOKIE,
        "path": COOKIE_PATH,
        "httponly": True,
        "secure": cookie_is_secure(request),
        "samesite": "strict",
        # the browser may drop it sooner; the server checks idle and absolute age itself
        "max_age": int(ABSOLUTE.total_seconds()),
    }


async def current_session(request: Request, db: SessionDep) -> ConsoleSession:
    return await read_session(request, db)


async def require_operator(request: Request, db: SessionDep) -> ConsoleSession:
    session = await read_session(request, db)
    if session.role == "operator":
        return session
    if session.role == "partner":
        raise NotFound()  # an operator page does not exist for a partner
    raise SignInRequired()


async def require_partner(request: Request, db: SessionDep) -> PortalPartner:
    session = await read_session(request, db)
    if session.role == "partner":
        partner: PortalPartner = request.state.console_partner
        return partner
    if session.role == "operator":
        raise NotFound()
    raise SignInRequired()


def _same_site(request: Request) -> bool:
    """What the browser says about where the form came from: ``Sec-Fetch-Site`` (every current
    browser sends it), else ``Origin`` against the host the request was sent to."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return True
    hosts = {request.headers.get("host", ""), request.headers.get("x-forwarded-host", "")}
    return origin.split("://", 1)[-1] in hosts


def csrf_ok(request: Request, session: ConsoleSession, submitted: object) -> bool:
    """The form's token matches this session's, and the browser says the form is ours."""
    if not _same_site(request):
        return False
    expected = signer(request).csrf_token(session)
    return isinstance(submitted, str) and hmac.compare_digest(submitted, expected)


CurrentSession = Annotated[ConsoleSession, Depends(current_session)]
Operator = Annotated[ConsoleSession, Depends(require_operator)]
NgoPartner = Annotated[PortalPartner, Depends(require_partner)]
