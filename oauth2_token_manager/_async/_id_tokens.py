"""JWTs from the issuer: validation (ID tokens, signed or encrypted userinfo) and the subject's
latest ID token in the store. The rules are the pure functions of ``_oidc`` and ``_jose``;
this module fetches what they need (metadata, the JWK Set) and keeps what they accept.

Used by the issuer (an ID token in a refresh response) and by the claims manager; it receives
its dependencies (client configuration, metadata and JWK Set caches, store, clock) and imports
no manager. ``_sync/_id_tokens.py`` is generated from this file by ``scripts/unasync.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, cast

from joserfc.jwk import KeySet

from .._client_auth import ClientConfig
from .._exceptions import IDTokenError, OAuth2TokenManagerError
from .._jose import decrypt, secret_key, verify
from .._json import JSONDocumentError, loads_object
from .._models import GroupKey, IDToken
from .._oidc import check_id_token_claims, check_refreshed_id_token, is_jwe, unverified_header
from .._stores import AsyncTokenStore
from ._discovery import AsyncMetadataCache
from ._jwks import AsyncJWKSCache

__all__ = ["AsyncIDTokens", "AsyncJWTValidator"]


class AsyncJWTValidator:
    """Claims of JWTs from one issuer for one client, after every check has passed."""

    def __init__(
        self,
        client: ClientConfig,
        metadata: AsyncMetadataCache,
        jwks: AsyncJWKSCache,
        *,
        clock: Callable[[], float],
        leeway: float,
    ) -> None:
        self._client = client
        self._metadata = metadata
        self._jwks = jwks
        self._clock = clock
        self._leeway = leeway
        self._decryption_keys = (
            KeySet.import_key_set(cast(Any, dict(client.decryption_keys)))
            if client.decryption_keys
            else None
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._client!r})"

    async def validate_jwt(
        self, value: str, algorithms: Collection[str], error: type[OAuth2TokenManagerError]
    ) -> dict[str, Any]:
        """Claims of a JWT from the issuer: decrypted (JWE) with the client's keys, signature
        checked with the client secret (HS*) or the issuer's JWK Set."""
        if not isinstance(value, str) or not value:
            raise error("not a JWT")
        if is_jwe(value):
            value = decrypt(value, self._decryption_keys, error)
            if value.count(".") != 2:  # encrypted only (userinfo): the plaintext is JSON
                try:
                    return loads_object(value)
                except JSONDocumentError as exc:
                    raise error(f"the decrypted JWT is {exc}") from None
        alg = str(unverified_header(value).get("alg", ""))
        if alg.startswith("HS"):
            if not self._client.client_secret:
                raise error(f"an {alg} JWT needs the client secret, and there is none")
            return verify(value, secret_key(self._client.client_secret), algorithms, error)
        return await self._jwks.verify(value, algorithms, error)

    async def validate_id_token(
        self,
        id_token: str,
        *,
        nonce: str | None = None,
        previous: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The claims of a valid ID token (see ``_oidc``); ``IDTokenError`` otherwise.
        ``previous`` is the subject's last ID token's claims (a refresh must keep them)."""
        claims = await self.validate_jwt(
            id_token, (self._client.id_token_signed_response_alg,), IDTokenError
        )
        metadata = await self._metadata.get()
        check_id_token_claims(
            claims,
            issuer=metadata.issuer,
            client_id=self._client.client_id,
            now=self._clock(),
            leeway=self._leeway,
            nonce=nonce,
        )
        if previous is not None:
            check_refreshed_id_token(previous, claims)
        return claims


class AsyncIDTokens:
    """Each subject's latest validated ID token, kept even after it expired (for
    ``id_token_hint`` at logout) until ``retention`` seconds past its ``exp``."""

    def __init__(
        self,
        store: AsyncTokenStore,
        *,
        issuer: str,
        client_id: str,
        clock: Callable[[], float],
        retention: float,
    ) -> None:
        self._store = store
        self._issuer = issuer
        self._client_id = client_id
        self._clock = clock
        self._retention = retention

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._issuer!r}, {self._client_id!r})"

    def group(self, subject: str) -> GroupKey:
        """Where a subject's ID tokens are stored."""
        return GroupKey("id", self._issuer, self._client_id, subject, "")

    async def latest(self, subject: str | None) -> IDToken | None:
        """The subject's most recent ID token, even expired."""
        if subject is None:
            return None
        found = await self._store.find(self.group(subject), None)
        return cast(IDToken, found[0]) if found else None

    async def keep(self, value: str, claims: Mapping[str, Any]) -> IDToken:
        """Keep a validated ID token as its subject's latest (older ones are dropped)."""
        now = self._clock()
        subject = str(claims["sub"])
        older = await self._store.find(self.group(subject), None)
        token = IDToken(
            value=value,
            issuer=self._issuer,
            client_id=self._client_id,
            subject=subject,
            expires_at=float(claims["exp"]) + self._retention,
            issued_at=float(claims["iat"]),
            updated_at=now,
            token_type="ID",
            extra={"claims": dict(claims)},
        )
        await self._store.put(token)
        for old in older:
            if old.token_hash != token.token_hash:
                await self._store.delete(old.token_hash)
        return token
