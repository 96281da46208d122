"""``AsyncIssuer``: one authorization server and this client, shared by its managers.

It owns the I/O every manager needs and decides nothing: the transport (client-authenticated
form posts read with a size bound), retries of transient failures (the rules are ``_retry``'s),
the failure cache, the single-flight locks (in this process and, with a shared store, across
processes), events, and the metadata, JWK Set and ID-token helpers. ``_sync/_issuer.py`` is
generated from this file by ``scripts/unasync.py``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx

from .._client_auth import ClientConfig
from .._config import issuer_options
from .._deadline import time_left
from .._events import EventKind, TokenEvent, emit
from .._exceptions import (
    ConfigurationError,
    DeadlineExceededError,
    OAuth2TokenManagerError,
    ResponseError,
    StoreError,
    TransportError,
    cached_outcome,
)
from .._grants import LockKey
from .._metadata import ServerMetadata
from .._models import GroupKey, Token
from .._protocol import (
    IntrospectionResult,
    TokenResponse,
    TokenTypeHint,
    build_form_request,
    check_revocation_response,
    introspection_form,
    parse_introspection_response,
    parse_token_response,
    revocation_form,
)
from .._retry import is_transient, persist_delay, reached_server, retry_after, retry_delay
from .._stores import AsyncTokenStore, TokenStore, async_store
from .._synchronization import (
    PerLoop,
    async_loop_alive,
    async_loop_identity,
    async_shielded,
    async_sleep_from,
    reset_after_fork,
)
from ._discovery import AsyncMetadataCache
from ._http import read_bounded
from ._id_tokens import AsyncIDTokens, AsyncJWTValidator
from ._jwks import AsyncJWKSCache
from ._locks import AsyncKeyedLocks, AsyncStoreLock, _AsyncHeld

__all__ = ["AsyncIssuer"]

logger = logging.getLogger("oauth2_token_manager")

_FAILURES_MAX = 10_000


class AsyncIssuer:
    """One authorization server and this client's configuration, shared by its managers.

    Holds the store, the HTTP client, the metadata cache and the single-flight locks. Options
    are keyword arguments (see ``IssuerOptions``).

    Ownership: ``aclose`` closes the HTTP clients the issuer made; what it is given
    (``store=``, ``http=``) the caller closes (the default ``MemoryStore`` holds nothing to
    close). Processes and event loops: made before ``os.fork()``, the issuer works in the
    child with its own HTTP connections, lock tables and failure cache; used from several
    event loops (one after the other or at once, in several threads), it makes one HTTP
    client per loop, and its locks are per loop. A given ``http=`` client is used as given
    in every event loop, and refused in a forked child.
    """

    def __init__(
        self,
        url: str,
        client: ClientConfig,
        *,
        store: AsyncTokenStore | TokenStore | None = None,
        http: httpx.AsyncClient | None = None,
        **options: Any,
    ) -> None:
        self.url = url
        self.client = client
        self.options = issuer_options(url, client, store, options)
        self._sleep = async_sleep_from(self.options.sleep)
        self.store: AsyncTokenStore = async_store(store, self.options.clock)
        self._given_http = http
        self._given_in_parent = False  # a given client, after a fork: not usable in the child
        self._clients = PerLoop(self._new_client, async_loop_identity, async_loop_alive)
        self._closed = False
        self.metadata_cache = AsyncMetadataCache(
            url,
            self._http,
            clock=self.options.clock,
            overrides=self.options.metadata,
            discovery=self.options.discovery,
            allow_insecure_loopback=self.options.allow_insecure_loopback,
            max_body=self.options.max_response_bytes,
        )
        self.locks: AsyncKeyedLocks[LockKey] = AsyncKeyedLocks()
        self._failures: dict[object, tuple[OAuth2TokenManagerError, float]] = {}
        # Rotated refresh tokens a store outage kept from being stored: (spent hash, successor)
        # per refresh group; the next refresh of the group writes it first (the manager's).
        self.unsaved_rotations: dict[GroupKey, tuple[str, Token]] = {}
        self.jwks = AsyncJWKSCache(
            self._http,
            self.metadata_cache,
            clock=self.options.clock,
            max_body=self.options.max_response_bytes,
            min_refetch_interval=self.options.jwks_min_refetch_interval,
        )
        self.jwt = AsyncJWTValidator(
            client,
            self.metadata_cache,
            self.jwks,
            clock=self.options.clock,
            leeway=self.options.leeway,
        )
        self.id_tokens = AsyncIDTokens(
            self.store,
            issuer=url,
            client_id=client.client_id,
            clock=self.options.clock,
            retention=self.options.claims_retention,
        )
        reset_after_fork(self)

    def _after_fork(self) -> None:
        """In a forked child: no connection, failure or lock of the parent is shared."""
        self._failures = {}  # (its own clients are dropped by ``PerLoop``)
        self.unsaved_rotations = {}  # the parent writes its own (one writer per rotation)
        self._given_in_parent = self._given_http is not None

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client of this process and event loop (see ``_http``)."""
        return self._http()

    def _http(self) -> httpx.AsyncClient:
        """The client every request of this issuer goes through.

        A client given as ``http=`` is used as given, in every event loop (it must work
        there), but never in a forked child: its pooled connections are the parent's, and
        answers would cross (``ConfigurationError``). Otherwise the issuer makes one client
        per process and event loop, and forgets those of closed event loops.
        """
        if self._closed:
            raise ConfigurationError("the issuer is closed")
        given = self._given_http
        if given is not None:
            if self._given_in_parent:
                raise ConfigurationError(
                    "the issuer's http client was made before os.fork() and is shared with the "
                    "parent process: make the issuer in the child, or give it no http client "
                    "(it then makes one per process)"
                )
            return given
        return self._clients.get()

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.options.timeout)

    def __repr__(self) -> str:
        return f"AsyncIssuer({self.url!r}, {self.client!r})"

    async def aclose(self) -> None:
        """Close the HTTP clients this issuer made (that of this event loop; those of other
        loops are dropped). A given ``http=`` client or ``store=`` stays open: it is the
        caller's. The issuer sends nothing afterwards (``ConfigurationError``)."""
        if self._closed:
            return
        self._closed = True
        mine, _ = self._clients.take()  # other loops' clients cannot be closed from here
        if mine is not None:
            await mine.aclose()

    async def __aenter__(self) -> AsyncIssuer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def metadata(self) -> ServerMetadata:
        """The authorization server's metadata (discovered and cached, or configured)."""
        return await self.metadata_cache.get()

    async def has_endpoint(self, field: str) -> bool:
        """Whether the server advertises ``field`` (a metadata failure is raised, not hidden)."""
        metadata = await self.metadata()
        return bool(metadata.get(field))

    # --- transport ------------------------------------------------------------------------

    async def _post(self, field: str, form: dict[str, str]) -> Any:
        """Send a client-authenticated form to the endpoint named by metadata ``field``."""
        metadata = await self.metadata()
        url = metadata.endpoint(field)
        request = build_form_request(
            self.client,
            url,
            form,
            token_endpoint=metadata.endpoint("token_endpoint"),
            issuer=self.url,
            now=self.options.clock(),
        )
        return await read_bounded(self._http(), request, self.options.max_response_bytes)

    async def token_request(
        self, form: dict[str, str], requested: frozenset[str] | None
    ) -> TokenResponse:
        """POST a grant to the token endpoint and parse the answer."""
        raw = await self._post("token_endpoint", form)
        return parse_token_response(raw, requested)

    async def request_token(
        self, form: dict[str, str], requested: frozenset[str] | None, *, replay_safe: bool
    ) -> TokenResponse:
        """``token_request`` with transient failures retried (see ``_retry``); a grant that
        must not be replayed (refresh) is retried only if the server surely did not see it.
        A pause that would end past the operation's deadline is not taken:
        ``DeadlineExceededError`` (from the last failure) instead."""
        options = self.options
        retry = 0
        while True:
            try:
                return await self.token_request(form, requested)
            except (ResponseError, TransportError) as exc:
                if not is_transient(exc) or (not replay_safe and reached_server(exc)):
                    raise
                retry += 1
                header = exc.retry_after if isinstance(exc, ResponseError) else None
                server_delay = (
                    retry_after({"retry-after": header}, options.clock()) if header else None
                )
                delay = retry_delay(options.retry, retry, server_delay, options.random)
                if delay is None:
                    raise
                left = time_left()
                if left is not None and delay >= left:
                    raise DeadlineExceededError(
                        f"before retry {retry} (last failure: {exc})", exc.endpoint
                    ) from exc
                logger.info("token request failed (%s); retry %d in %.2f s", exc, retry, delay)
                await self._sleep(delay)

    async def introspect_value(self, value: str, hint: TokenTypeHint | None) -> IntrospectionResult:
        """RFC 7662 introspection of a token value."""
        raw = await self._post("introspection_endpoint", introspection_form(value, hint))
        return parse_introspection_response(raw)

    async def revoke_value(self, value: str, hint: TokenTypeHint | None) -> None:
        """RFC 7009 revocation of a token value."""
        raw = await self._post("revocation_endpoint", revocation_form(value, hint))
        check_revocation_response(raw)

    async def persist(
        self, what: str, write: Callable[[], Any], deadline: float | None = None
    ) -> None:
        """``await write()``, a store write of an answer the server gave, shielded from the
        caller's cancellation and deadline; a ``StoreError`` is retried with backoff (the
        injected ``sleep``) until ``deadline`` (of ``monotonic``; default: ``persist_timeout``
        from now), then raised. It is tried once at least."""
        if deadline is None:
            deadline = self.options.monotonic() + self.options.persist_timeout
        await async_shielded(self._persist, what, write, deadline)

    async def _persist(self, what: str, write: Callable[[], Any], deadline: float) -> None:
        options = self.options
        attempt = 0
        while True:
            try:
                await write()
                return
            except StoreError as exc:
                attempt += 1
                delay = persist_delay(attempt, options.random)
                if options.monotonic() + delay > deadline:
                    raise
                logger.warning(
                    "storing %s failed (%s); retry %d in %.2f s", what, exc, attempt, delay
                )
                await self._sleep(delay)

    # --- failure cache ----------------------------------------------------------------------

    def recent_failure(self, key: object) -> OAuth2TokenManagerError | None:
        """The failure of ``key``'s last token request if within ``failure_cache`` seconds:
        a fresh error each time, with the server's fields, saying it is that cached outcome
        (``_exceptions.cached_outcome``)."""
        entry = self._failures.get(key)
        if entry is None:
            return None
        error, failed_at = entry
        if self.options.clock() < failed_at + self.options.failure_cache:
            return cached_outcome(error, failed_at)
        self._failures.pop(key, None)
        return None

    def remember_failure(self, key: object, error: OAuth2TokenManagerError) -> None:
        """Serve ``error`` to ``key``'s callers for ``failure_cache`` seconds, so a failing
        server is not stampeded (what is remembered is ``_decide.failure_plan``'s choice)."""
        if self.options.failure_cache > 0:
            if len(self._failures) >= _FAILURES_MAX:
                self._failures.clear()
            self._failures[key] = (error, self.options.clock())

    # --- single-flight ----------------------------------------------------------------------

    def store_lock(self, key: LockKey) -> AsyncStoreLock:
        """The store's cross-process lock for a lock key (a no-op for process-local stores)."""
        name = hashlib.sha256(repr(key).encode()).hexdigest()
        options = self.options
        wait = options.lock_lease + options.retry.attempts * (
            options.timeout + options.retry.max_delay
        )
        return AsyncStoreLock(
            self.store,
            name,
            lease=options.lock_lease,
            timeout=wait,
            sleep=self._sleep,
            monotonic=options.monotonic,
            jitter=options.random,
        )

    def lock(self, key: LockKey, *, wait: bool = True) -> _AsyncIssuerLock:
        """The lock of ``key`` in this process, then the store's across processes.

        ``async with issuer.lock(key, wait=False) as held:`` only tries: ``held`` is False
        when another caller holds either lock (nothing is held then).
        """
        return _AsyncIssuerLock(self, key, wait)

    # --- events -----------------------------------------------------------------------------

    def emit(
        self,
        kind: EventKind,
        subject: str | None,
        scopes: frozenset[str] | None,
        *,
        token_hash: str | None = None,
        previous_hash: str | None = None,
        error: OAuth2TokenManagerError | None = None,
    ) -> None:
        """Tell the ``on_event`` callback (if any) what happened."""
        if self.options.on_event is None:
            return
        emit(
            self.options.on_event,
            TokenEvent(
                kind,
                self.url,
                self.client.client_id,
                subject,
                scopes,
                token_hash=token_hash,
                previous_hash=previous_hash,
                error=error,
                at=self.options.clock(),
            ),
        )


class _AsyncIssuerLock:
    """``AsyncIssuer.lock``: the keyed lock, then the store lock; released in reverse."""

    __slots__ = ("_held", "_issuer", "_key", "_store_lock", "_wait")

    def __init__(self, issuer: AsyncIssuer, key: LockKey, wait: bool) -> None:
        self._issuer = issuer
        self._key = key
        self._wait = wait
        self._held: _AsyncHeld[LockKey] | None = None
        self._store_lock: AsyncStoreLock | None = None

    async def __aenter__(self) -> bool:
        locks = self._issuer.locks
        held = locks.hold(self._key) if self._wait else locks.try_hold(self._key)
        if held is None:
            return False
        await held.__aenter__()
        try:
            store_lock = self._issuer.store_lock(self._key)
            if not await store_lock.acquire(wait=self._wait):
                await held.__aexit__(None, None, None)
                return False
        except BaseException:
            await held.__aexit__(None, None, None)
            raise
        self._held, self._store_lock = held, store_lock
        return True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._held is None or self._store_lock is None:
            return
        try:
            await self._store_lock.release()
        finally:
            await self._held.__aexit__(None, None, None)
