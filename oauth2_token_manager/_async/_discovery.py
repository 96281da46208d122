"""The metadata cache of one issuer: discovery over HTTP with the pure rules of ``_metadata``.

Written once here; ``_sync/_discovery.py`` is generated from it by ``scripts/unasync.py``.
Which URLs are tried, what makes a document acceptable and when it is fetched again are the
pure functions and ``MetadataCacheState`` of ``_metadata`` (see its module documentation).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping

import httpx

from .._exceptions import MetadataError, OAuth2TokenManagerError, ResponseError
from .._http_types import MAX_BODY_BYTES
from .._metadata import (
    DEFAULT_MAX_AGE,
    DEFAULT_RETRY_AFTER_FAILURE,
    MetadataCacheState,
    ServerMetadata,
    check_issuer,
    check_overrides,
    document_absent,
    metadata_from_overrides,
    parse_metadata,
    well_known_urls,
)
from ._http import read_bounded
from ._locks import AsyncKeyedLocks

__all__ = ["AsyncMetadataCache"]


class AsyncMetadataCache:
    """The metadata of ``issuer``, fetched when needed and kept for ``max_age`` seconds.

    ``get()`` fetches (one caller at a time; the others wait and share the result) when there
    is no document or it is older than ``max_age``, but not within ``retry_after_failure``
    seconds of a failed fetch. A failed refresh keeps the last good document in use; with none,
    ``get()`` raises the error of the last attempt. With ``discovery=False`` nothing is
    fetched: the metadata is ``issuer`` plus ``overrides``. Configuration errors (an insecure
    issuer or override URL) are raised by the constructor. ``http`` is a client or a function
    giving the client to use now (an issuer's, per process and event loop); the lock is per
    event loop.
    """

    def __init__(
        self,
        issuer: str,
        http: httpx.AsyncClient | Callable[[], httpx.AsyncClient],
        *,
        clock: Callable[[], float],
        overrides: Mapping[str, str] | None = None,
        discovery: bool = True,
        allow_insecure_loopback: bool = False,
        max_age: float = DEFAULT_MAX_AGE,
        retry_after_failure: float = DEFAULT_RETRY_AFTER_FAILURE,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        check_issuer(issuer, allow_insecure_loopback=allow_insecure_loopback)
        self._overrides: Mapping[str, str] = types.MappingProxyType(dict(overrides or {}))
        check_overrides(self._overrides, allow_insecure_loopback=allow_insecure_loopback)
        self._issuer = issuer
        self._http: Callable[[], httpx.AsyncClient] = http if callable(http) else lambda: http
        self._clock = clock
        self._allow_insecure_loopback = allow_insecure_loopback
        self._max_body = max_body
        self._urls = well_known_urls(issuer) if discovery else []
        self._static: ServerMetadata | None = None
        if not discovery:
            self._static = metadata_from_overrides(
                issuer, self._overrides, allow_insecure_loopback=allow_insecure_loopback
            )
        self._state = MetadataCacheState(max_age=max_age, retry_after_failure=retry_after_failure)
        self._lock: AsyncKeyedLocks[str] = AsyncKeyedLocks()  # one lock per event loop

    @property
    def issuer(self) -> str:
        """The configured issuer identifier."""
        return self._issuer

    @property
    def state(self) -> MetadataCacheState:
        """The current cache state (immutable; for inspection and tests)."""
        return self._state

    async def get(self) -> ServerMetadata:
        """The metadata: cached, fetched, or the last good document after a failed refresh."""
        if self._static is not None:
            return self._static
        if self._state.needs_fetch(self._clock()):
            async with self._lock.hold("metadata"):
                if self._state.needs_fetch(self._clock()):  # not done while we waited
                    try:
                        document = await self._fetch()
                    except OAuth2TokenManagerError as exc:
                        self._state = self._state.on_failure(exc, self._clock())
                        if self._state.document is None:
                            raise
                    else:
                        self._state = self._state.on_success(document, self._clock())
        return self._state.current()

    def invalidate(self) -> None:
        """Fetch again on the next ``get()`` (the old document stays in use if that fails)."""
        self._state = self._state.invalidate()

    async def _fetch(self) -> ServerMetadata:
        """Try the well-known URLs in order; the first acceptable document wins."""
        tried: list[str] = []
        http = self._http()
        for url in self._urls:
            request = http.build_request("GET", url, headers={"Accept": "application/json"})
            response = await read_bounded(http, request, self._max_body)
            try:
                return parse_metadata(
                    response.content,
                    response.content_type,
                    response.status_code,
                    self._issuer,
                    url,
                    overrides=self._overrides,
                    allow_insecure_loopback=self._allow_insecure_loopback,
                )
            except ResponseError as exc:
                if exc.retry_after is None:  # carry the server's Retry-After, like every endpoint
                    exc.retry_after = response.headers.get("retry-after")
                if not document_absent(exc):
                    raise
                tried.append(str(exc))
        raise MetadataError(
            f"no metadata document found for issuer {self._issuer}: " + "; ".join(tried)
        )
