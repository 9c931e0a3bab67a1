"""Who is on a connection: JWTs (HS256 and RS256) and anonymous viewers.

A token carries ``sub`` (the user id), ``name`` (display name), ``roles`` (a list, e.g.
``["moderator"]``) and ``exp``. HS256 tokens are signed with ``gateway_jwt_secret``;
when ``gateway_jwt_public_key_file`` is set, RS256 tokens signed by the matching private
key (an identity provider) are accepted too. No token at all makes an anonymous viewer,
who may only read events that allow it (``LiveEvent.anonymous_read``).

Pure: :class:`TokenVerifier` is built once from settings and only does CPU work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

import jwt

from deploy.settings import Settings

ANONYMOUS: Final = "anonymous"
MODERATOR_ROLES: Final = frozenset({"moderator", "broadcaster", "admin"})


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    name: str
    roles: tuple[str, ...] = ()
    expires_at_ms: int | None = None  # None: never (anonymous)
    anonymous: bool = False

    @property
    def can_post(self) -> bool:
        return not self.anonymous

    @property
    def is_moderator(self) -> bool:
        return bool(MODERATOR_ROLES & set(self.roles))


ANONYMOUS_VIEWER: Final = Identity(ANONYMOUS, "anonymous", anonymous=True)


class AuthError(Exception):
    """A token was refused; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TokenVerifier:
    def __init__(
        self,
        hs256_secret: str,
        rs256_public_key: str | None = None,
        audience: str | None = None,
        leeway_s: float = 0.0,
    ) -> None:
        self._keys: dict[str, Any] = {"HS256": hs256_secret}
        if rs256_public_key:
            self._keys["RS256"] = rs256_public_key
        self._audience = audience
        self._leeway = leeway_s

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        public = None
        if settings.gateway_jwt_public_key_file is not None:
            public = settings.gateway_jwt_public_key_file.read_text()
        return cls(settings.gateway_jwt_secret, public, settings.gateway_jwt_audience)

    def verify(self, token: str) -> Identity:
        """The identity in ``token``; :class:`AuthError` (``token_expired`` or
        ``bad_token``) otherwise. The algorithm comes from the key we hold for the
        header's ``alg``, never from the token alone (no ``none``, no HS/RS confusion)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise AuthError("bad_token", f"not a JWT: {e}") from e
        alg = header.get("alg")
        key = self._keys.get(alg) if isinstance(alg, str) else None
        if key is None:
            raise AuthError("bad_token", f"algorithm {alg!r} is not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[str(alg)],
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["sub", "exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError as e:
            raise AuthError("token_expired", "the token has expired") from e
        except jwt.PyJWTError as e:
            raise AuthError("bad_token", f"token refused: {e}") from e
        sub = claims.get("sub")
        roles = claims.get("roles", [])
        if not isinstance(sub, str) or not sub or sub == ANONYMOUS:
            raise AuthError("bad_token", "claim `sub` must be a user id")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthError("bad_token", "claim `roles` must be a list of strings")
        name = claims.get("name")
        return Identity(
            user_id=sub,
            name=name if isinstance(name, str) and name else sub,
            roles=tuple(roles),
            expires_at_ms=int(claims["exp"]) * 1000,
        )


def mint_token(
    settings: Settings,
    user_id: str,
    *,
    name: str | None = None,
    roles: tuple[str, ...] = (),
    ttl_s: int = 3600,
    now_s: float | None = None,
) -> str:
    """A development token signed with the settings' HS256 secret."""
    now = int(time.time() if now_s is None else now_s)
    claims: dict[str, Any] = {
        "sub": user_id,
        "name": name or user_id,
        "roles": list(roles),
        "iat": now,
        "exp": now + ttl_s,
    }
    if settings.gateway_jwt_audience:
        claims["aud"] = settings.gateway_jwt_audience
    return jwt.encode(claims, settings.gateway_jwt_secret, algorithm="HS256")
