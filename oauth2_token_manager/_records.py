"""How stored records are made: pure functions of what arrived, what was asked and ``now``.

Rules stated once here:

- An access token issued by a token response is stored with what the response says: its
  value, type, granted ``scope`` (RFC 6749 §5.1: absent means the requested scope) and extra
  fields. It is cached under the scopes that were *asked* for when the server granted others
  (``requested_scopes``), so the same request finds it again.
- Its expiry: ``now + expires_in``; without ``expires_in``, introspection's ``exp`` when
  introspection answered ``active`` with one; else ``now + default_lifetime``.
- A refresh token that rotated (the response carries another ``refresh_token``) is replaced by a
  copy holding the new value: same subject, scopes and expiry, ``issued_at`` and ``updated_at``
  now, no stale introspection, and the grant id of the first refresh token of its grant, which
  the access tokens it issues carry too (``grant_of``), so that revoking or losing the grant
  finds them.
- A token registered by the caller merges what the caller says with what introspection says:
  the caller's values always win; introspection fills the gaps (subject, unless it names the
  client itself; scopes; expiry; issue time; audience). A token introspection calls inactive
  is refused with ``TokenRevokedError``: the server would reject it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._exceptions import TokenRevokedError
from ._models import AccessToken, Token, short_hash
from ._protocol import IntrospectionResult, TokenResponse

__all__ = [
    "access_expiry",
    "belongs_to_grant",
    "grant_of",
    "issued_access_token",
    "registered_token",
    "rotated_refresh_token",
]


def grant_of(refresh: Token) -> str:
    """The grant id of a refresh token (its own hash when it never rotated)."""
    return refresh.grant_id or refresh.token_hash


def belongs_to_grant(token: Token, refresh: Token) -> bool:
    """Whether ``token`` was issued with the grant of ``refresh`` (or is that refresh token)."""
    return token.grant_id == grant_of(refresh)


def access_expiry(
    response: TokenResponse,
    now: float,
    introspection: IntrospectionResult | None,
    default_lifetime: float,
) -> float:
    """When an issued access token expires (the rule of the module docstring)."""
    if response.expires_in is not None:
        return now + response.expires_in
    if introspection is not None and introspection.active and introspection.exp:
        return introspection.exp
    return now + default_lifetime


def issued_access_token(
    response: TokenResponse,
    *,
    issuer: str,
    client_id: str,
    subject: str | None,
    requested: frozenset[str] | None,
    resource: str | None,
    now: float,
    expires_at: float,
    introspection: IntrospectionResult | None,
    grant_id: str | None,
) -> AccessToken:
    """The access token a successful token response issues, as it is stored."""
    return AccessToken(
        value=response.access_token,
        issuer=issuer,
        client_id=client_id,
        subject=subject,
        scopes=response.scopes,
        requested_scopes=(
            requested if requested is not None and requested != response.scopes else None
        ),
        expires_at=expires_at,
        issued_at=now,
        updated_at=now,
        token_type=response.token_type,
        resource=resource,
        extra=response.extra,
        introspection=introspection.raw if introspection else None,
        introspected_at=now if introspection else None,
        grant_id=grant_id,
    )


def rotated_refresh_token(spent: Token, value: str, now: float) -> Token:
    """The successor of a refresh token that rotated to ``value``."""
    return spent.replace(
        value=value,
        updated_at=now,
        issued_at=now,
        introspection=None,
        introspected_at=None,
        grant_id=grant_of(spent),
    )


def registered_token(
    cls: type[Token],
    value: str,
    *,
    issuer: str,
    client_id: str,
    subject: str | None,
    scopes: frozenset[str] | None,
    expires_at: float | None,
    token_type: str,
    resource: str | None,
    extra: Mapping[str, Any] | None,
    introspection: IntrospectionResult | None,
    now: float,
) -> Token:
    """A token the caller registers, merged with introspection (caller's values win)."""
    audience: tuple[str, ...] = ()
    issued_at = now
    if introspection is not None:
        if not introspection.active:
            raise TokenRevokedError(
                f"the authorization server says token {short_hash(value)} is not active"
            )
        if subject is None and introspection.sub and introspection.sub != client_id:
            subject = introspection.sub  # a user's token, not the client's own
        if scopes is None:
            scopes = introspection.scopes
        if expires_at is None:
            expires_at = introspection.exp
        issued_at = introspection.iat or now
        audience = introspection.aud
    return cls(
        value=value,
        issuer=issuer,
        client_id=client_id,
        subject=subject,
        scopes=scopes,
        expires_at=expires_at,
        issued_at=issued_at,
        updated_at=now,
        token_type=token_type,
        resource=resource,
        audience=audience,
        extra=extra or {},
        introspection=introspection.raw if introspection else None,
        introspected_at=now if introspection else None,
    )
