"""The async issuer and token managers: the only hand-written I/O code of the library.

``oauth2_token_manager/_sync/_manager.py`` is generated from this file by ``scripts/unasync.py``
(``AsyncIssuer`` → ``Issuer``, ``await x`` → ``x`` ...). Edit this file, then run
``python scripts/unasync.py``; CI fails when the generated file is stale.

Theory of operation: every decision is made by the pure core (``_decide``, ``_protocol``);
this module reads the store, asks the core, sends what it builds and stores what it parses.
``get`` reads the store without a lock; on a miss it takes the per-key lock (the key is exactly
the cache key), re-reads the store (a waiter uses what the winner stored) and only then asks
the authorization server.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, cast

import httpx
from joserfc.jwk import KeySet

from .._client_auth import ClientConfig
from .._config import ANY, AnyType, IssuerOptions
from .._decide import (
    ClientCredentialsGrant,
    Fail,
    Refresh,
    UseToken,
    decide,
    select_fresh,
    select_refresh,
)
from .._events import EventKind, TokenEvent, emit
from .._exceptions import (
    IDTokenError,
    InvalidGrant,
    OAuth2TokenManagerError,
    ResponseError,
    RevocationError,
    StoreError,
    TokenNotFoundError,
    TokenRevokedError,
    TransportError,
)
from .._jose import decrypt, secret_key, verify
from .._metadata import ServerMetadata
from .._models import AccessToken, GroupKey, IDToken, RefreshToken, Token, TokenKind, token_hash
from .._oidc import check_id_token_claims, check_refreshed_id_token, is_jwe, unverified_header
from .._protocol import (
    IntrospectionResult,
    TokenResponse,
    TokenTypeHint,
    build_form_request,
    check_revocation_response,
    client_credentials_form,
    introspection_form,
    parse_introspection_response,
    parse_token_response,
    refresh_form,
    revocation_form,
)
from .._retry import is_transient, reached_server, retry_after, retry_delay
from .._scopes import ScopeMatch, normalize
from .._stores import AsyncTokenStore, Page, TokenQuery, TokenStore, async_store
from .._synchronization import async_sleep_from
from ._auth import AsyncTokenAuth
from ._discovery import AsyncMetadataCache
from ._http import read_bounded
from ._jwks import AsyncJWKSCache
from ._locks import AsyncKeyedLocks, AsyncStoreLock

__all__ = ["AsyncAccessTokenManager", "AsyncIssuer", "AsyncRefreshTokenManager"]

logger = logging.getLogger("oauth2_token_manager")

_HINTS: dict[TokenKind, TokenTypeHint] = {"access": "access_token", "refresh": "refresh_token"}
_CLASSES: dict[TokenKind, type[Token]] = {"access": AccessToken, "refresh": RefreshToken}
_UNSET: Any = object()
_GROUP_CACHE_MAX = 10_000


def _grant_of(refresh: Token) -> str:
    """The grant id of a refresh token (its own hash when it never rotated)."""
    return refresh.grant_id or refresh.token_hash


class AsyncIssuer:
    """One authorization server and this client's configuration, shared by its managers.

    Holds the store, the HTTP client (created and owned when not given), the metadata cache
    and the single-flight locks. Options are keyword arguments (see ``IssuerOptions``).
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
        self.options = IssuerOptions(**options)
        self._sleep = async_sleep_from(self.options.sleep)
        self.store: AsyncTokenStore = async_store(store, self.options.clock)
        self._owns_http = http is None
        self.http = http or httpx.AsyncClient(timeout=self.options.timeout)
        self.metadata_cache = AsyncMetadataCache(
            url,
            self.http,
            clock=self.options.clock,
            overrides=self.options.metadata,
            discovery=self.options.discovery,
            allow_insecure_loopback=self.options.allow_insecure_loopback,
            max_body=self.options.max_response_bytes,
        )
        self.locks: AsyncKeyedLocks[tuple[GroupKey, str]] = AsyncKeyedLocks()
        self._failures: dict[object, tuple[OAuth2TokenManagerError, float]] = {}
        self.jwks = AsyncJWKSCache(self)
        self._decryption_keys = (
            KeySet.import_key_set(cast(Any, dict(client.decryption_keys)))
            if client.decryption_keys
            else None
        )

    def __repr__(self) -> str:
        return f"AsyncIssuer({self.url!r}, {self.client!r})"

    async def aclose(self) -> None:
        """Close the HTTP client if this issuer created it."""
        if self._owns_http:
            await self.http.aclose()

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
        return await read_bounded(self.http, request, self.options.max_response_bytes)

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
        must not be replayed (refresh) is retried only if the server surely did not see it."""
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
                logger.info("token request failed (%s); retry %d in %.2f s", exc, retry, delay)
                await self._sleep(delay)

    def recent_failure(self, key: object) -> OAuth2TokenManagerError | None:
        """The failure of ``key``'s last token request if within ``failure_cache`` seconds."""
        entry = self._failures.get(key)
        if entry is None:
            return None
        if self.options.clock() < entry[1]:
            return entry[0].with_traceback(None)
        self._failures.pop(key, None)
        return None

    def remember_failure(self, key: object, error: OAuth2TokenManagerError) -> None:
        """Serve ``error`` to ``key``'s callers for ``failure_cache`` seconds, so a failing
        server is not stampeded. Callers keep transient errors and failed refreshes ahead; a
        final error such as ``invalid_grant`` is not kept (its consequence, a removed refresh
        token, speaks for itself)."""
        if self.options.failure_cache > 0:
            if len(self._failures) >= 10_000:
                self._failures.clear()
            self._failures[key] = (error, self.options.clock() + self.options.failure_cache)

    def store_lock(self, key: tuple[GroupKey, str]) -> AsyncStoreLock:
        """The store's cross-process lock for a cache key (a no-op for process-local stores)."""
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

    # --- OpenID Connect (rules in _oidc) ------------------------------------------------------

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
                    claims = json.loads(value)
                except ValueError:
                    raise error("the decrypted JWT is neither a JWS nor JSON") from None
                if not isinstance(claims, dict):
                    raise error("the decrypted JWT is not a JSON object")
                return claims
        alg = str(unverified_header(value).get("alg", ""))
        if alg.startswith("HS"):
            if not self.client.client_secret:
                raise error(f"an {alg} JWT needs the client secret, and there is none")
            return verify(value, secret_key(self.client.client_secret), algorithms, error)
        return await self.jwks.verify(value, algorithms, error)

    async def validate_id_token(
        self,
        id_token: str,
        *,
        nonce: str | None = None,
        previous: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The claims of a valid ID token (see ``_oidc``); ``IDTokenError`` otherwise."""
        claims = await self.validate_jwt(
            id_token, (self.client.id_token_signed_response_alg,), IDTokenError
        )
        metadata = await self.metadata()
        check_id_token_claims(
            claims,
            issuer=metadata.issuer,
            client_id=self.client.client_id,
            now=self.options.clock(),
            leeway=self.options.leeway,
            nonce=nonce,
        )
        if previous is not None:
            check_refreshed_id_token(previous, claims)
        return claims

    def _id_group(self, subject: str) -> GroupKey:
        return GroupKey("id", self.url, self.client.client_id, subject, "")

    async def latest_id_token(self, subject: str | None) -> IDToken | None:
        """The subject's most recent ID token, even expired (for ``id_token_hint``)."""
        if subject is None:
            return None
        found = await self.store.find(self._id_group(subject), None)
        return cast(IDToken, found[0]) if found else None

    async def store_id_token(self, value: str, claims: Mapping[str, Any]) -> IDToken:
        """Keep a validated ID token as the subject's latest (older ones are dropped)."""
        now = self.options.clock()
        subject = str(claims["sub"])
        older = await self.store.find(self._id_group(subject), None)
        token = IDToken(
            value=value,
            issuer=self.url,
            client_id=self.client.client_id,
            subject=subject,
            expires_at=float(claims["exp"]) + self.options.claims_retention,
            issued_at=float(claims["iat"]),
            updated_at=now,
            token_type="ID",
            extra={"claims": dict(claims)},
        )
        await self.store.put(token)
        for old in older:
            if old.token_hash != token.token_hash:
                await self.store.delete(old.token_hash)
        return token

    async def introspect_value(self, value: str, hint: TokenTypeHint | None) -> IntrospectionResult:
        """RFC 7662 introspection of a token value."""
        raw = await self._post("introspection_endpoint", introspection_form(value, hint))
        return parse_introspection_response(raw)

    async def revoke_value(self, value: str, hint: TokenTypeHint | None) -> None:
        """RFC 7009 revocation of a token value."""
        raw = await self._post("revocation_endpoint", revocation_form(value, hint))
        check_revocation_response(raw)

    async def has_endpoint(self, field: str) -> bool:
        """Whether the server advertises ``field`` (a metadata failure is raised, not hidden)."""
        metadata = await self.metadata()
        return bool(metadata.get(field))


class _AsyncTokenManager:
    """What access- and refresh-token managers share; ``kind`` says which tokens it handles."""

    kind: TokenKind

    def __init__(self, issuer: AsyncIssuer) -> None:
        self.issuer = issuer
        self._client_id = issuer.client.client_id
        # GroupKey per (subject, resource): building the named tuple costs more than the lookup.
        self._groups: dict[tuple[str | None, str | None], GroupKey] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.issuer!r})"

    async def aclose(self) -> None:
        """Close the issuer's HTTP client if it owns it."""
        await self.issuer.aclose()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _group(self, subject: str | None, resource: str | None = None) -> GroupKey:
        return GroupKey(self.kind, self.issuer.url, self._client_id, subject or "", resource or "")

    async def _resolve(self, token: Token | str) -> tuple[str, Token | None]:
        """The token's value and its stored record (if any)."""
        value = token.value if isinstance(token, Token) else token
        stored = await self.issuer.store.get(token_hash(value))
        if stored is not None and stored.kind != self.kind:
            stored = None
        return value, stored

    async def find_by_hash(self, hash_: str) -> Token | None:
        """The stored token whose SHA-256 hash (hex) is ``hash_``."""
        stored = await self.issuer.store.get(hash_)
        return stored if stored is not None and stored.kind == self.kind else None

    # --- register / introspect --------------------------------------------------------------

    async def register(
        self,
        value: str,
        *,
        subject: str | None = None,
        scopes: Iterable[str] | None = None,
        expires_at: float | None = None,
        expires_in: float | None = None,
        token_type: str = "Bearer",
        resource: str | None = None,
        extra: Mapping[str, Any] | None = None,
        auto_introspect: bool | None = None,
    ) -> Token:
        """Store a token obtained elsewhere. Missing metadata comes from introspection.

        The caller's values always win over introspection's. A revoked token (or one the
        store cannot vouch for) raises ``TokenRevokedError``; an inactive one ``TokenRevokedError``
        too, since the server would reject it. ``resource`` applies to access tokens only: a
        refresh token serves every resource of its grant (RFC 8707 §2.2).
        """
        if resource is not None and self.kind == "refresh":
            raise ValueError("resource applies to access tokens; refresh tokens serve any resource")
        iss = self.issuer
        now = iss.options.clock()
        hash_ = token_hash(value)
        try:
            revoked = await iss.store.is_revoked(hash_)
        except StoreError as exc:  # fail closed
            raise TokenRevokedError(
                f"cannot check the revocation list for token {hash_[:12]}: {exc}"
            ) from exc
        if revoked:
            raise TokenRevokedError(f"token {hash_[:12]} was revoked and cannot be registered")
        if expires_at is None and expires_in is not None:
            expires_at = now + expires_in
        scope_set = normalize(scopes)[0] if scopes is not None else None
        introspection: IntrospectionResult | None = None
        if auto_introspect is None:
            auto_introspect = iss.options.auto_introspect
        if auto_introspect and await iss.has_endpoint("introspection_endpoint"):
            introspection = await iss.introspect_value(value, _HINTS[self.kind])
            if not introspection.active:
                raise TokenRevokedError(
                    f"the authorization server says token {hash_[:12]} is not active"
                )
            if subject is None and introspection.sub and introspection.sub != self._client_id:
                # A subject other than the client itself: a user's token, not client credentials.
                subject = introspection.sub
            if scope_set is None:
                scope_set = introspection.scopes
            if expires_at is None:
                expires_at = introspection.exp
        token = _CLASSES[self.kind](
            value=value,
            issuer=iss.url,
            client_id=self._client_id,
            subject=subject,
            scopes=scope_set,
            expires_at=expires_at,
            issued_at=(introspection.iat if introspection and introspection.iat else now),
            updated_at=now,
            token_type=token_type,
            resource=resource,
            audience=introspection.aud if introspection else (),
            extra=extra or {},
            introspection=introspection.raw if introspection else None,
            introspected_at=now if introspection else None,
        )
        await iss.store.put(token)
        logger.debug("registered %s token %s", self.kind, token.short_hash)
        return token

    async def introspect(self, token: Token | str) -> IntrospectionResult:
        """RFC 7662 introspection; a stored result younger than the interval is reused.

        ``active: false`` marks the stored token unusable. A cached result is never used past
        the token's expiry.
        """
        iss = self.issuer
        now = iss.options.clock()
        value, stored = await self._resolve(token)
        if (
            stored is not None
            and stored.introspection is not None
            and stored.introspected_at is not None
            and now - stored.introspected_at < iss.options.min_introspect_interval
            and (stored.expires_at is None or now < stored.expires_at)
        ):
            return IntrospectionResult.from_mapping(stored.introspection)
        result = await iss.introspect_value(value, _HINTS[self.kind])
        if stored is not None:
            await iss.store.put(
                stored.replace(
                    introspection=result.raw,
                    introspected_at=now,
                    active=stored.active and result.active,
                    updated_at=now,
                )
            )
        return result

    # --- revoke / delete --------------------------------------------------------------------

    async def revoke(self, token: Token | str) -> None:
        """RFC 7009 revocation; the token is first put on the local revocation list.

        Revoking a refresh token also locally revokes the access tokens obtained with it
        (RFC 7009 §2.1 lets the server do the same).
        """
        iss = self.issuer
        now = iss.options.clock()
        value, stored = await self._resolve(token)
        hash_ = token_hash(value)
        until = now + iss.options.revoked_retention
        if stored is not None and stored.expires_at is not None:
            until = stored.expires_at
        await iss.store.revoke(hash_, until)
        if self.kind == "refresh" and stored is not None:
            await self._revoke_children(stored, now)
        await iss.revoke_value(value, _HINTS[self.kind])
        logger.debug("revoked %s token %s", self.kind, hash_[:12])

    async def _revoke_children(self, refresh: Token, now: float) -> None:
        query = TokenQuery(
            issuer=self.issuer.url,
            kind="access",
            client_id=self._client_id,
            subject=refresh.subject or "",
        )
        page = await self.issuer.store.list(query)
        for child in page.items:
            if child.grant_id == _grant_of(refresh):
                until = child.expires_at or now + self.issuer.options.revoked_retention
                await self.issuer.store.revoke(child.token_hash, until)

    async def delete(self, token: Token | str) -> bool:
        """Remove a token locally; with ``revoke_on_delete`` revoke it at the server first.

        Returns whether a stored token was removed. The token is removed locally even when the
        revocation fails; then ``RevocationError`` is raised with the cause.
        """
        iss = self.issuer
        value, stored = await self._resolve(token)
        failure: OAuth2TokenManagerError | None = None
        if iss.options.revoke_on_delete:
            try:
                await self.revoke(value)
            except OAuth2TokenManagerError as exc:
                failure = exc
        removed = await iss.store.delete(token_hash(value)) is not None or stored is not None
        if failure is not None:
            raise RevocationError(
                f"{self.kind} token {token_hash(value)[:12]} was deleted locally "
                "but not revoked at the server",
                failure,
            )
        return removed

    async def delete_all(self, subject: str | None = None) -> int:
        """Delete every token of ``subject`` (``None``: client credentials); return the count.

        With ``revoke_on_delete`` each is revoked first; failures are collected and raised as
        one ``RevocationError`` after every token was removed locally.
        """
        page = await self.list(subject=subject)
        failures: list[OAuth2TokenManagerError] = []
        count = 0
        for token in page.items:
            try:
                if await self.delete(token):
                    count += 1
            except RevocationError as exc:
                count += 1
                failures.append(exc.cause)
        if failures:
            raise RevocationError(
                f"{len(failures)} of {count} {self.kind} tokens were deleted locally but not "
                "revoked",
                failures[0],
            )
        return count

    # --- listing and maintenance ------------------------------------------------------------

    async def list(
        self,
        *,
        subject: str | AnyType | None = ANY,
        client_id: str | AnyType | None = None,
        status: Literal["valid", "expired", "all"] = "all",
        offset: int = 0,
        limit: int | None = None,
    ) -> Page:
        """Stored tokens of this kind, newest first. ``subject=None``: client credentials;
        ``client_id`` defaults to this client (``ANY`` lists every client's)."""
        query = TokenQuery(
            issuer=self.issuer.url,
            kind=self.kind,
            client_id=(
                self._client_id if client_id is None else None if client_id is ANY else client_id
            ),
            subject=None if subject is ANY else (subject or ""),
            status=status,
            now=self.issuer.options.clock(),
            offset=offset,
            limit=limit,
        )
        return await self.issuer.store.list(query)

    async def update(
        self,
        token: Token | str,
        *,
        scopes: Iterable[str] | None = _UNSET,
        expires_at: float | None = _UNSET,
        extra: Mapping[str, Any] | None = None,
    ) -> Token:
        """Change a stored token's scopes, expiry or extra metadata (merged); return it."""
        value, stored = await self._resolve(token)
        if stored is None:
            raise TokenNotFoundError(f"no stored {self.kind} token {token_hash(value)[:12]}")
        changes: dict[str, Any] = {"updated_at": self.issuer.options.clock()}
        if scopes is not _UNSET:
            changes["scopes"] = normalize(scopes)[0] if scopes is not None else None
            changes["requested_scopes"] = None
        if expires_at is not _UNSET:
            changes["expires_at"] = expires_at
        if extra:
            changes["extra"] = {**stored.extra, **extra}
        updated = stored.replace(**changes)
        await self.issuer.store.put(updated)
        return updated

    async def invalidate(self, token: Token | str) -> None:
        """Mark a stored token unusable (a resource server refused it); it stays listed."""
        iss = self.issuer
        _, stored = await self._resolve(token)
        if stored is not None and stored.active:
            await iss.store.put(stored.replace(active=False, updated_at=iss.options.clock()))
            logger.debug("%s token %s marked unusable", self.kind, stored.short_hash)

    async def expunge_expired(self) -> int:
        """Remove expired tokens from the store; return how many."""
        return await self.issuer.store.expunge_expired(self.issuer.options.clock())


class AsyncAccessTokenManager(_AsyncTokenManager):
    """Access tokens of one issuer: cached, refreshed, obtained by client credentials."""

    kind: TokenKind = "access"

    async def __aenter__(self) -> AsyncAccessTokenManager:
        return self

    async def get(
        self,
        subject: str | None = None,
        scopes: Iterable[str] | None = None,
        *,
        resource: str | None = None,
        match: ScopeMatch | None = None,
    ) -> AccessToken:
        """A usable access token for ``subject`` (``None``: client credentials) and scopes.

        From the store when one is usable; else refreshed with the subject's refresh token,
        or obtained with the client-credentials grant; else ``TokenNotFoundError``. Errors of
        the server are raised as they are, never replaced by "not found".
        """
        iss = self.issuer
        if scopes is None:
            want: frozenset[str] | None = None
            scope_key: str | None = None
        else:
            want, scope_key = normalize(scopes)
        match = match or iss.options.scope_match
        group = self._groups.get((subject, resource))
        if group is None:
            group = self._group(subject, resource)
            if len(self._groups) >= _GROUP_CACHE_MAX:
                self._groups.clear()
            self._groups[(subject, resource)] = group
        key = scope_key if match == "exact" else None
        options = iss.options
        found, due = select_fresh(
            await iss.store.find(group, key),
            want,
            match,
            options.clock(),
            options.leeway,
            options.refresh_ahead,
        )
        if found is None or due:
            return await self._obtain(group, key, subject, want, match, resource, found)
        return cast(AccessToken, found)

    def auth(
        self,
        scopes: Iterable[str] | None = None,
        subject: str | None = None,
        *,
        resource: str | None = None,
        allowed_origins: Iterable[str] | None = None,
        retry_insufficient_scope: bool = False,
    ) -> AsyncTokenAuth:
        """An ``httpx.Auth`` sending this manager's tokens (see ``AsyncTokenAuth``)."""
        return AsyncTokenAuth(
            self,
            scopes,
            subject,
            resource=resource,
            allowed_origins=allowed_origins,
            retry_insufficient_scope=retry_insufficient_scope,
        )

    async def _obtain(
        self,
        group: GroupKey,
        key: str | None,
        subject: str | None,
        want: frozenset[str] | None,
        match: ScopeMatch,
        resource: str | None,
        current: Token | None,
    ) -> AccessToken:
        """Single-flight for one cache key, in this process and across processes.

        ``current`` is a usable token due for refresh ahead: then the locks are only tried,
        and on a busy lock or a transient failure ``current`` is returned.
        """
        iss = self.issuer
        lock_key = (group, "*" if key is None else key)
        held = iss.locks.hold(lock_key) if current is None else iss.locks.try_hold(lock_key)
        if held is None:
            return cast(AccessToken, current)  # another caller is refreshing it
        async with held:
            failure = iss.recent_failure(lock_key)
            if failure is not None:
                if current is not None:
                    return cast(AccessToken, current)
                raise failure
            store_lock = iss.store_lock(lock_key)
            if not await store_lock.acquire(wait=current is None):
                return cast(AccessToken, current)
            try:
                return await self._obtain_locked(group, key, subject, want, match, resource)
            except (ResponseError, TransportError) as exc:
                iss.emit("failed", subject, want, error=exc)
                if current is not None and not isinstance(exc, InvalidGrant):
                    # Refresh ahead is opportunistic: the current token is still valid. The
                    # failure is logged, sent to on_event and cached (no stampede); a dead
                    # grant (invalid_grant) is raised, since its tokens are gone.
                    iss.remember_failure(lock_key, exc)
                    logger.warning("refresh ahead failed (%s): the current token is kept", exc)
                    return cast(AccessToken, current)
                if is_transient(exc):
                    iss.remember_failure(lock_key, exc)
                raise
            finally:
                await store_lock.release()

    async def _obtain_locked(
        self,
        group: GroupKey,
        key: str | None,
        subject: str | None,
        want: frozenset[str] | None,
        match: ScopeMatch,
        resource: str | None,
    ) -> AccessToken:
        """Re-read the store (a waiter uses what the winner stored), decide, act."""
        iss = self.issuer
        options = iss.options
        now = options.clock()
        access = await iss.store.find(group, key)
        refresh: list[Token] = []
        if subject is not None:
            refresh = await iss.store.find(self._refresh_group(subject), None)
        decision = decide(
            access,
            refresh,
            subject=subject,
            want=want,
            match=match,
            now=now,
            leeway=options.leeway,
            ahead=options.refresh_ahead,
        )
        if isinstance(decision, UseToken):
            return cast(AccessToken, decision.token)
        if isinstance(decision, Fail):
            raise TokenNotFoundError(decision.reason)
        if isinstance(decision, ClientCredentialsGrant):
            response = await iss.request_token(
                client_credentials_form(want, resource), want, replay_safe=True
            )
            token = await self._store_response(response, None, resource, now, None, want)
            iss.emit("obtained", None, token.scopes, token_hash=token.token_hash)
            return token
        assert isinstance(decision, Refresh)
        return await self._refresh(decision.refresh_token, want, resource)

    def _refresh_group(self, subject: str) -> GroupKey:
        return GroupKey("refresh", self.issuer.url, self._client_id, subject, "")

    async def _refresh(
        self, chosen: Token, want: frozenset[str] | None, resource: str | None
    ) -> AccessToken:
        """Refresh under the grant's lock: one refresh of a grant at a time, across scope sets
        and processes, always with the newest refresh token (rotation never races)."""
        iss = self.issuer
        grant_key = (chosen.group, "grant")
        async with iss.locks.hold(grant_key):
            store_lock = iss.store_lock(grant_key)
            await store_lock.acquire()
            try:
                now = iss.options.clock()
                rt = select_refresh(await iss.store.find(chosen.group, None), want, now)
                if rt is None:
                    raise TokenNotFoundError(
                        f"the refresh token of subject {chosen.subject!r} is gone"
                    )
                return await self._refresh_with(rt, want, resource, now)
            finally:
                await store_lock.release()

    async def _refresh_with(
        self, rt: Token, want: frozenset[str] | None, resource: str | None, now: float
    ) -> AccessToken:
        iss = self.issuer
        try:
            response = await iss.request_token(
                refresh_form(rt.value, want, resource),
                want if want else rt.scopes,
                replay_safe=False,
            )
        except InvalidGrant:
            logger.info("refresh token %s rejected (invalid_grant): removed", rt.short_hash)
            await iss.store.delete(rt.token_hash)
            await self._drop_children(rt)
            iss.emit("removed", rt.subject, rt.scopes, token_hash=rt.token_hash)
            raise
        id_claims: dict[str, Any] | None = None
        if response.id_token is not None:  # validated before anything is stored (Core §12.2)
            previous = await iss.latest_id_token(rt.subject)
            id_claims = await iss.validate_id_token(
                response.id_token, previous=previous.claims if previous is not None else None
            )
        if response.refresh_token and response.refresh_token != rt.value:
            rotated = rt.replace(
                value=response.refresh_token,
                updated_at=now,
                issued_at=now,
                introspection=None,
                introspected_at=None,
                grant_id=_grant_of(rt),
            )
            await iss.store.replace(rt.token_hash, rotated)
            logger.debug("refresh token %s rotated to %s", rt.short_hash, rotated.short_hash)
            iss.emit(
                "rotated",
                rt.subject,
                rt.scopes,
                token_hash=rotated.token_hash,
                previous_hash=rt.token_hash,
            )
        token = await self._store_response(response, rt.subject, resource, now, rt, want)
        if response.id_token is not None and id_claims is not None:
            await iss.store_id_token(response.id_token, id_claims)
        iss.emit("refreshed", rt.subject, token.scopes, token_hash=token.token_hash)
        return token

    async def _drop_children(self, rt: Token) -> None:
        page = await self.list(subject=rt.subject)
        for token in page.items:
            if token.grant_id == _grant_of(rt):
                await self.issuer.store.delete(token.token_hash)

    async def _store_response(
        self,
        response: TokenResponse,
        subject: str | None,
        resource: str | None,
        now: float,
        parent: Token | None,
        want: frozenset[str] | None,
    ) -> AccessToken:
        iss = self.issuer
        expires_at = now + response.expires_in if response.expires_in is not None else None
        introspection: IntrospectionResult | None = None
        if expires_at is None and await iss.has_endpoint("introspection_endpoint"):
            try:
                introspection = await iss.introspect_value(response.access_token, "access_token")
            except OAuth2TokenManagerError as exc:
                logger.info("introspection for the expiry failed (%s): default lifetime", exc)
            if introspection is not None and introspection.active and introspection.exp:
                expires_at = introspection.exp
        if expires_at is None:
            expires_at = now + iss.options.default_lifetime
        token = AccessToken(
            value=response.access_token,
            issuer=iss.url,
            client_id=self._client_id,
            subject=subject,
            scopes=response.scopes,
            requested_scopes=want if want is not None and want != response.scopes else None,
            expires_at=expires_at,
            issued_at=now,
            updated_at=now,
            token_type=response.token_type,
            resource=resource,
            extra=response.extra,
            introspection=introspection.raw if introspection else None,
            introspected_at=now if introspection else None,
            grant_id=_grant_of(parent) if parent is not None else None,
        )
        await iss.store.put(token)
        logger.debug("stored access token %s", token.short_hash)
        return token


class AsyncRefreshTokenManager(_AsyncTokenManager):
    """Refresh tokens of one issuer: registered, introspected, revoked, deleted, listed."""

    kind: TokenKind = "refresh"

    async def __aenter__(self) -> AsyncRefreshTokenManager:
        return self

    async def get(self, subject: str, scopes: Iterable[str] | None = None) -> RefreshToken:
        """A stored usable refresh token of ``subject`` that covers ``scopes`` (no I/O)."""
        iss = self.issuer
        want = normalize(scopes)[0] if scopes is not None else None
        found = select_refresh(
            await iss.store.find(self._group(subject), None), want, iss.options.clock()
        )
        if found is None:
            raise TokenNotFoundError(f"no usable refresh token for subject {subject!r}")
        return cast(RefreshToken, found)
