"""The issuer's JWK Set: fetched from ``jwks_uri`` (or inline ``jwks`` in the metadata),
cached for an hour, re-fetched when a token names an unknown ``kid`` (key rotation); such
re-fetches happen at most every ``jwks_min_refetch_interval`` seconds, so a flood of bogus
``kid`` values does not stampede the server. Shared by ID token, userinfo and any later JWT
validation. It receives what it needs (HTTP client, metadata cache, clock, limits) like
``AsyncMetadataCache`` does, and knows nothing of the issuer that holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import httpx
from joserfc.jwk import KeySet

from .._exceptions import MetadataError, OAuth2TokenManagerError
from .._jose import UnknownKeyError, key_set, verify
from .._json import JSONDocumentError, describe, loads_object
from .._protocol import error_from_response
from ._discovery import AsyncMetadataCache
from ._http import read_bounded
from ._locks import AsyncKeyedLocks

__all__ = ["AsyncJWKSCache"]

MAX_AGE = 3600.0


class AsyncJWKSCache:
    """The issuer's signing keys, cached; ``verify`` handles key rotation. ``http`` is a
    client or a function giving the client to use now; the lock is per event loop."""

    def __init__(
        self,
        http: httpx.AsyncClient | Callable[[], httpx.AsyncClient],
        metadata: AsyncMetadataCache,
        *,
        clock: Callable[[], float],
        max_body: int,
        min_refetch_interval: float,
    ) -> None:
        self._http: Callable[[], httpx.AsyncClient] = http if callable(http) else lambda: http
        self._metadata = metadata
        self._clock = clock
        self._max_body = max_body
        self._min_refetch_interval = min_refetch_interval
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._refetched_at = float("-inf")
        self._lock: AsyncKeyedLocks[str] = AsyncKeyedLocks()  # one lock per event loop
        self.fetches = 0
        """How many times the JWK Set was fetched (for tests and metrics)."""

    async def keys(self, *, refetch: bool = False) -> KeySet:
        """The key set; ``refetch`` asks for a fresh copy (rate-limited)."""
        metadata = await self._metadata.get()
        inline = metadata.get("jwks")
        if inline is not None and not metadata.get("jwks_uri"):
            return key_set(inline)
        now = self._clock()
        if self._keys is not None and not refetch and now - self._fetched_at < MAX_AGE:
            return self._keys
        async with self._lock.hold("jwks"):
            now = self._clock()
            if self._keys is not None:
                if not refetch and now - self._fetched_at < MAX_AGE:
                    return self._keys  # another caller fetched it meanwhile
                if refetch:
                    if now - self._refetched_at < self._min_refetch_interval:
                        return self._keys  # rate limit on unknown kids: keep what we have
                    self._refetched_at = now
            url = metadata.endpoint("jwks_uri")
            request = httpx.Request("GET", url, headers={"Accept": "application/json"})
            raw = await read_bounded(self._http(), request, self._max_body)
            if raw.status_code != 200:
                raise error_from_response(raw)
            try:
                document = loads_object(raw.content)
            except JSONDocumentError as exc:
                raise MetadataError(
                    f"the JWK Set at {raw.url} is {exc} "
                    f"({describe(raw.content, raw.content_type, raw.status_code)})"
                ) from None
            self._keys = key_set(document)
            self._fetched_at = now
            self.fetches += 1
            return self._keys

    async def verify(
        self,
        value: str,
        algorithms: Collection[str],
        error: type[OAuth2TokenManagerError],
    ) -> dict[str, Any]:
        """The claims of a JWS signed by one of the issuer's keys (one re-fetch on an
        unknown ``kid``)."""
        try:
            return verify(value, await self.keys(), algorithms, error)
        except UnknownKeyError:
            pass
        try:
            return verify(value, await self.keys(refetch=True), algorithms, error)
        except UnknownKeyError:
            raise error("no key of the issuer's JWK Set has the token's kid") from None
