"""Options shared by the managers of one issuer, validated once (pure, no I/O)."""

from __future__ import annotations

import dataclasses
import enum
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from ._arguments import option
from ._events import TokenEvent
from ._exceptions import ConfigurationError
from ._retry import RetryPolicy
from ._scopes import ScopeMatch
from ._synchronization import AsyncSleep, Sleep

__all__ = ["ANY", "AnyType", "IssuerOptions", "issuer_options"]


class AnyType(enum.Enum):
    """The type of ``ANY``."""

    ANY = "ANY"

    def __repr__(self) -> str:
        return "ANY"


ANY = AnyType.ANY
"""A listing filter value meaning "whatever its value" (``subject=None`` is client credentials)."""


@dataclasses.dataclass(frozen=True, slots=True)
class IssuerOptions:
    """How the managers of one issuer behave. Every duration is in seconds: a finite number,
    not negative (``NaN``, ``inf`` or a ``bool`` raise ``ConfigurationError``).

    - ``leeway``: a token this close to expiry is not handed out (capped at half its lifetime).
    - ``scope_match``: ``"exact"`` (the default) or ``"superset"`` (the smallest superset).
    - ``min_introspect_interval``: a stored introspection result younger than this is reused.
    - ``revoke_on_delete``: ``delete`` revokes at the server first (failures are raised).
    - ``auto_introspect``: ``register`` fills missing metadata from introspection.
    - ``default_lifetime``: the lifetime assumed for an access token whose response has no
      ``expires_in`` when introspection cannot tell.
    - ``revoked_retention``: how long a revoked hash of unknown expiry stays on the list.
    - ``discovery``: fetch RFC 8414 / OpenID metadata; ``metadata`` overrides any field.
    - ``allow_insecure_loopback``: accept ``http://`` for 127.0.0.1/localhost (tests, demos).
    - ``max_response_bytes``: responses larger than this are rejected without reading on.
    - ``timeout``: the longest one HTTP attempt may take (the timeout of the httpx client
      the issuer creates; each attempt also ends at the operation's deadline).
    - ``deadline``: the longest a public operation may keep its caller waiting, in all: every
      attempt, retry pause and lock wait until the server's answer arrives (``timeout=`` of
      a call overrides it); then ``DeadlineExceededError``. See ``_deadline``.
    - ``refresh_ahead``: the last fraction of a token's lifetime (at least the leeway) in
      which one caller refreshes it while the others keep using it; 0 turns it off.
    - ``retry``: how transient failures (connect errors, timeouts, 429, 502-504) are retried.
    - ``failure_cache``: after a failed token request, callers of the same key within this
      many seconds get that failure again without a new request (no stampede).
    - ``lock_lease``: the lease of a store's cross-process lock (renewed while held).
    - ``on_event``: a callable receiving every ``TokenEvent``.
    - ``min_userinfo_refresh_interval``: cached userinfo claims younger than this are reused.
    - ``claims_retention``: how long ID tokens (after their ``exp``) and userinfo answers are
      kept; ``expunge_expired`` removes them afterwards.
    - ``jwks_min_refetch_interval``: an unknown ``kid`` re-fetches the JWKS at most this often.
    - ``clock``: epoch seconds; injected by tests.
    - ``random``: a number in [0, 1) for the jitter of retries and lock polls; injected by tests.
    - ``sleep``: how retries and store-lock waits pause. ``None`` (the default) is
      ``anyio.sleep`` for an async issuer and ``time.sleep`` for a sync one; an injected one
      must be awaitable for an async issuer and plain for a sync one. Injected by tests, with
      ``monotonic``, so that backoff, ``Retry-After`` and lock waits take no real time.
    - ``monotonic``: seconds of a monotonic clock (the deadline of a store-lock wait).
    - ``persist_timeout``: how long storing a token answer that arrived may take, store errors
      retried with backoff (doubling from 50 ms to 0.5 s), shielded from the caller's
      cancellation and deadline: the server has answered, and a rotated refresh token is the
      grant itself. Past it, the refresh token is kept in memory and written first by the next
      refresh of its grant; the caller is served the access token it got.
    """

    leeway: float = 60.0
    scope_match: ScopeMatch = "exact"
    min_introspect_interval: float = 30.0
    revoke_on_delete: bool = True
    auto_introspect: bool = True
    default_lifetime: float = 300.0
    revoked_retention: float = 30 * 24 * 3600.0
    discovery: bool = True
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    allow_insecure_loopback: bool = False
    max_response_bytes: int = 1024 * 1024
    timeout: float = 10.0
    deadline: float = 15.0
    refresh_ahead: float = 0.1
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    failure_cache: float = 2.0
    lock_lease: float = 10.0
    on_event: Callable[[TokenEvent], None] | None = None
    min_userinfo_refresh_interval: float = 30.0
    claims_retention: float = 30 * 24 * 3600.0
    jwks_min_refetch_interval: float = 10.0
    clock: Callable[[], float] = time.time
    random: Callable[[], float] = random.random
    sleep: Sleep | AsyncSleep | None = None
    monotonic: Callable[[], float] = time.monotonic
    persist_timeout: float = 30.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # every float option: finite and >= 0
            value = getattr(self, field.name)
            if field.type == "float" or (field.type == "float | None" and value is not None):
                option(field.name, value)
        if isinstance(self.max_response_bytes, bool) or not isinstance(
            self.max_response_bytes, int
        ):
            raise ConfigurationError("max_response_bytes must be an integer")
        if not isinstance(self.metadata, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()
        ):
            raise ConfigurationError("metadata must map field names to strings")
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigurationError("retry must be a RetryPolicy")
        if self.scope_match not in ("exact", "superset"):
            raise ConfigurationError("scope_match must be 'exact' or 'superset'")
        if self.max_response_bytes <= 0:
            raise ConfigurationError("max_response_bytes must be > 0")
        if self.refresh_ahead >= 1:
            raise ConfigurationError("refresh_ahead must be in [0, 1)")
        for name in ("default_lifetime", "lock_lease", "timeout", "deadline"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be > 0")


_STORE_METHODS = ("put", "get", "find", "replace", "delete", "revoke", "is_revoked", "list")


def issuer_options(
    url: object, client: object, store: object, options: Mapping[str, Any]
) -> IssuerOptions:
    """The options of an issuer, after checking its other arguments (``ConfigurationError``):
    the URL is a ``str``, the client a ``ClientConfig``, the store a token store (sync or
    async), and every option a field of ``IssuerOptions``."""
    from ._client_auth import ClientConfig  # _client_auth is not needed by the options

    if not isinstance(url, str):
        raise ConfigurationError(f"the issuer URL must be a string, not {type(url).__name__}")
    if not isinstance(client, ClientConfig):
        raise ConfigurationError(f"client must be a ClientConfig, not {type(client).__name__}")
    if store is not None and not all(callable(getattr(store, m, None)) for m in _STORE_METHODS):
        raise ConfigurationError(f"store must be a token store, not {type(store).__name__}")
    unknown = sorted(set(options) - _OPTION_NAMES)
    if unknown:
        raise ConfigurationError(f"unknown issuer options: {', '.join(unknown)}")
    return IssuerOptions(**options)


_OPTION_NAMES = frozenset(field.name for field in dataclasses.fields(IssuerOptions))
