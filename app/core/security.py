"""Passwords, tokens, API-key digests and encryption of secrets kept at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.config import Settings

logger = logging.getLogger("canopy.security")

_hasher = PasswordHasher()
# Verifying against this when a handle is unknown keeps login timing the same either way.
_DUMMY_HASH = _hasher.hash("canopy-dummy-password")


def configure_password_hashing(time_cost: int, memory_kib: int) -> None:
    """Set argon2id's cost (once, at start). Existing hashes keep verifying with their own
    parameters, which argon2 stores inside each hash."""
    global _hasher, _DUMMY_HASH
    if (_hasher.time_cost, _hasher.memory_cost) == (time_cost, memory_kib):
        return
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
    _DUMMY_HASH = _hasher.hash("canopy-dummy-password")


JWT_ALGORITHM = "HS256"
JWT_AUDIENCE = "canopy:user"


async def hash_password(password: str) -> str:
    """argon2id, off the event loop (it is deliberately slow)."""
    return await anyio.to_thread.run_sync(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(check)


def digest(token: str) -> str:
    """SHA-256 hex digest of a high-entropy token (API keys, refresh tokens): stored instead of
    the token, looked up by equality. Such tokens need no slow hash; guessing them is hopeless."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str, nbytes: int = 32) -> str:
    return f"{prefix}{secrets.token_urlsafe(nbytes)}"


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def load_or_create_secret(data_dir: Path, name: str) -> str:
    """A random secret kept in ``data_dir/name`` (mode 0600), created on first use."""
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # O_EXCL: if two processes race, one creates and the other reads what it wrote
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


_VERIFIED_MAX = 100_000


def key_id(secret: str) -> str:
    """The ``kid`` of a JWT signing secret: it names the key in each token's header, so a
    rotation can verify old tokens with the old key while the new one signs. Derived from the
    secret (domain-separated hash, never reversible), so an operator names nothing by hand."""
    return hashlib.sha256(b"canopy-jwt-kid\0" + secret.encode()).hexdigest()[:16]


def fernet_for(material: str) -> Fernet:
    """The at-rest encryption key derived from a configured secret (any length ≥ 32 bytes)."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"canopy-at-rest-v1").derive(
        material.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class Keys:
    """The process's signing and encryption keys.

    - JWTs are signed with ``jwt_secret`` under its ``kid``; ``verifying`` maps every kid still
      accepted (the signing one and ``CANOPY_JWT_PREVIOUS_SECRETS``) to its secret.
    - Secrets at rest are encrypted with ``CANOPY_ENCRYPTION_KEY`` and decrypted with it or any
      older key (``CANOPY_ENCRYPTION_PREVIOUS_KEYS``). Keys derived from the JWT secrets come
      last, so what was encrypted before an encryption key was configured still reads until
      ``canopy keys rotate`` re-encrypts it.
    """

    jwt_secret: str
    fernet: MultiFernet
    primary: Fernet
    verifying: dict[str, str]
    _verified: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def jwt_kid(self) -> str:
        return key_id(self.jwt_secret)

    @property
    def decrypting_keys(self) -> int:
        return len(self.fernet._fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> Keys:
        if settings.jwt_secret is not None:
            jwt_secret = settings.jwt_secret.get_secret_value()
        else:
            jwt_secret = load_or_create_secret(settings.data_dir, "jwt_secret")
        previous = [s.get_secret_value() for s in settings.jwt_previous_secrets]
        return cls.build(
            jwt_secret,
            previous_jwt_secrets=previous,
            encryption_key=(
                settings.encryption_key.get_secret_value() if settings.encryption_key else None
            ),
            previous_encryption_keys=[
                s.get_secret_value() for s in settings.encryption_previous_keys
            ],
        )

    @classmethod
    def build(
        cls,
        jwt_secret: str,
        *,
        previous_jwt_secrets: Sequence[str] = (),
        encryption_key: str | None = None,
        previous_encryption_keys: Sequence[str] = (),
    ) -> Keys:
        jwt_secrets = _unique([jwt_secret, *previous_jwt_secrets])
        # without CANOPY_ENCRYPTION_KEY the signing secret encrypts too (the old behaviour)
        materials = _unique([encryption_key or jwt_secret, *previous_encryption_keys, *jwt_secrets])
        fernets = [fernet_for(m) for m in materials]
        return cls(
            jwt_secret=jwt_secret,
            fernet=MultiFernet(fernets),
            primary=fernets[0],
            verifying={key_id(s): s for s in jwt_secrets},
        )

    def encrypt(self, plaintext: bytes) -> bytes:
        return self.primary.encrypt(plaintext)

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self.fernet.decrypt(token)
        except InvalidToken as exc:  # key changed: a configuration problem, not user input
            raise RuntimeError(
                "cannot decrypt a stored secret with any configured key: was "
                "CANOPY_ENCRYPTION_KEY changed without keeping the old one in "
                "CANOPY_ENCRYPTION_PREVIOUS_KEYS?"
            ) from exc

    def reencrypt(self, token: bytes) -> bytes | None:
        """``token`` encrypted with the current key, or None when it already is. Raises
        ``InvalidToken`` when no configured key can read it."""
        try:
            self.primary.decrypt(token)
            return None
        except InvalidToken:
            return self.fernet.rotate(token)

    def encode_access_token(
        self,
        *,
        user_id: str,
        session_id: str,
        now: datetime,
        ttl: timedelta,
        auth_time: datetime | None = None,
    ) -> str:
        """``auth_time`` (OpenID Connect's claim) is when the person last proved who they are —
        the sign-in, carried unchanged through refreshes."""
        claims: dict[str, Any] = {
            "sub": user_id,
            "sid": session_id,
            "aud": JWT_AUDIENCE,
            "iat": int(now.timestamp()),
            "auth_time": int((auth_time or now).timestamp()),
            "exp": int((now + ttl).timestamp()),
        }
        return jwt.encode(
            claims, self.jwt_secret, algorithm=JWT_ALGORITHM, headers={"kid": self.jwt_kid}
        )

    def decode_access_token(self, token: str, *, now: datetime) -> dict[str, Any] | None:
        """The claims of a valid, unexpired access token, else None. A token whose signature was
        verified once is remembered (by its exact text), so a busy client costs one HMAC per
        token rather than one per request; expiry is still checked on every call."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if claims is None:
                return None
            if len(self._verified) >= _VERIFIED_MAX:
                self._verified.clear()  # crude but bounded; tokens live 15 minutes anyway
            self._verified[token] = claims
        # expiry against the injectable clock, so tests can move time
        if int(claims["exp"]) <= int(now.timestamp()):
            return None
        return claims

    def _verify(self, token: str) -> dict[str, Any] | None:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return None
        if kid is None:
            # signed before tokens carried a kid (they live minutes): any accepted key
            secrets_ = list(self.verifying.values())
        elif isinstance(kid, str) and kid in self.verifying:
            secrets_ = [self.verifying[kid]]
        else:
            return None  # a retired or unknown key
        for secret in secrets_:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    secret,
                    algorithms=[JWT_ALGORITHM],
                    audience=JWT_AUDIENCE,
                    options={
                        "require": ["exp", "sub", "sid"],
                        "verify_exp": False,
                        "verify_iat": False,
                    },
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError:
                return None
            return claims
        return None
