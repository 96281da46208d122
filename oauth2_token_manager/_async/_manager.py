"""The async token managers: the public operations on one issuer's tokens.

``oauth2_token_manager/_sync/_manager.py`` is generated from this file by ``scripts/unasync.py``
(``AsyncIssuer`` → ``Issuer``, ``await x`` → ``x`` ...). Edit this file, then run
``python scripts/unasync.py``; CI fails when the generated file is stale.

Theory of operation (h11's shape): every choice is made by the pure core. ``get`` reads the
store without a lock and asks ``_decide.select``; on a miss it builds one ``TokenRequest`` and
asks ``_decide.decide``, which names the grant and the locks to hold. The manager takes the
next lock the decision names, reads the store again and asks again (a waiter uses what the
winner stored), until it holds every lock; then it executes the grant: sends its form
(``_grants``), stores what ``_records`` builds from the answer, and on failure does what
``_decide.failure_plan`` says. The transport, retries, locks and events are the issuer's
(``_issuer``); ID tokens are ``_id_tokens``'.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, cast

from .._arguments import (
    check_list,
    check_lookup,
    check_registration,
    check_subject,
    check_token,
    check_update,
)
from .._config import ANY, AnyType
from .._deadline import bounded, deadline, suspended
from .._decide import (
    Fail,
    Obtain,
    TokenRequest,
    UseToken,
    decide,
    failure_plan,
    grant_moved_on,
    select,
    select_refresh,
)
from .._exceptions import (
    IDTokenError,
    InvalidArgumentError,
    OAuth2TokenManagerError,
    ResponseError,
    RevocationError,
    StoreError,
    TokenNotFoundError,
    TokenRevokedError,
    TransportError,
)
from .._grants import Grant, LockKey
from .._models import (
    AccessToken,
    GroupKey,
    RefreshToken,
    Token,
    TokenKind,
    hash_argument,
    hash_prefix,
    is_token_hash,
    match_hash,
    token_hash,
)
from .._protocol import IntrospectionResult, TokenResponse, TokenTypeHint
from .._records import (
    access_expiry,
    belongs_to_grant,
    issued_access_token,
    registered_token,
)
from .._scopes import ScopeMatch, normalize
from .._stores import AsyncTokenStore, Page, TokenQuery, scoped_expunge
from ._auth import AsyncTokenAuth
from ._issuer import AsyncIssuer

__all__ = ["AsyncAccessTokenManager", "AsyncIssuer", "AsyncRefreshTokenManager"]

logger = logging.getLogger("oauth2_token_manager")

_HINTS: dict[TokenKind, TokenTypeHint] = {"access": "access_token", "refresh": "refresh_token"}
_CLASSES: dict[TokenKind, type[Token]] = {"access": AccessToken, "refresh": RefreshToken}
_UNSET: Any = object()
_GROUP_CACHE_MAX = 10_000


async def expunge_kind(
    store: AsyncTokenStore, issuer: str, client_id: str, kind: TokenKind, now: float
) -> int:
    """Remove the tokens of ``kind``, ``issuer`` and ``client_id`` expired at ``now``; return
    how many. A store whose ``expunge_expired`` takes no ``query`` (a custom store written
    before it) gets a listing of those tokens and one ``delete`` each instead."""
    query = TokenQuery(issuer=issuer, kind=kind, client_id=client_id, status="expired", now=now)
    if scoped_expunge(store):
        return await store.expunge_expired(now, query)
    page = await store.list(query)
    for token in page.items:
        await store.delete(token.token_hash)
    return len(page.items)


def _kind(stored: Token | None, default: TokenKind) -> TokenKind:
    """The kind an operation acts as: the stored token's (routing), else the manager's."""
    return default if stored is None else stored.kind


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

    def _mine(self, stored: Token | None) -> Token | None:
        """``stored`` if it is an access or refresh token of this issuer and client; ``None``
        for nothing or another kind of record. ``TokenNotFoundError`` for a token of another
        issuer or client: a manager never acts on it, nor sends its value to this server."""
        if stored is None or stored.kind not in _HINTS:
            return None
        if stored.issuer != self.issuer.url or stored.client_id != self._client_id:
            raise TokenNotFoundError(
                f"stored {stored.kind} token {stored.short_hash} belongs to issuer "
                f"{stored.issuer} and client {stored.client_id!r}, not to this manager's"
            )
        return stored

    async def _by_hash(self, hash_: str) -> Token | None:
        """The stored access or refresh token of this issuer and client named by ``hash_``:
        its full SHA-256 hex (one ``store.get``) or a unique prefix of 8 or more hex digits
        (one ``store.list`` of this issuer's and client's tokens, see ``_models.match_hash``)."""
        digest = hash_argument(hash_)
        if is_token_hash(digest):
            return self._mine(await self.issuer.store.get(digest))
        query = TokenQuery(issuer=self.issuer.url, client_id=self._client_id)
        page = await self.issuer.store.list(query)
        mine = {t.token_hash: t for t in page.items if t.kind in _HINTS}
        found = match_hash(digest, mine)
        return None if found is None else mine[found]

    async def _resolve(
        self, token: Token | str | None, hash_: str | None = None
    ) -> tuple[str, Token | None]:
        """The value an operation acts on and its stored record: an access or refresh token
        of this issuer and client, whose kind routes the operation (its hint, its children),
        or ``None`` when the value is not stored.

        Exactly one of ``token`` (a ``Token`` or a value) and ``hash_`` (see ``_by_hash``;
        ``TokenNotFoundError`` when it names no stored token). A value that is no stored
        token but the hash of one is refused: a hash is never sent to the server as a token.
        """
        if token is None:
            if hash_ is None:
                raise InvalidArgumentError("give a token (or its value) or hash=, exactly one")
            stored = await self._by_hash(hash_)
            if stored is None:
                raise TokenNotFoundError(
                    f"no stored token of this issuer and client with hash {hash_prefix(hash_)}"
                )
            return stored.value, stored
        if hash_ is not None:
            raise InvalidArgumentError("give a token (or its value) or hash=, exactly one")
        check_token(token)
        value = token.value if isinstance(token, Token) else token
        store = self.issuer.store
        stored = self._mine(await store.get(token_hash(value)))
        if stored is None and is_token_hash(value) and self._mine(await store.get(value)):
            raise InvalidArgumentError(
                f"{hash_prefix(value)}... is the hash of a stored token, not a token: "
                "name it with hash="
            )
        return value, stored

    @bounded
    async def find_by_hash(self, hash_: str, *, timeout: float | None = None) -> Token | None:
        """The stored access or refresh token of this issuer and client (of either kind: the
        hash names one token) whose SHA-256 hash is ``hash_``, or a unique prefix of it of 8
        or more hex digits; ``InvalidArgumentError`` for a prefix several tokens share."""
        return await self._by_hash(hash_)

    # --- register / introspect --------------------------------------------------------------

    @bounded
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
        timeout: float | None = None,
    ) -> Token:
        """Store a token obtained elsewhere. Missing metadata comes from introspection.

        The caller's values always win over introspection's. A revoked token (or one the
        store cannot vouch for) raises ``TokenRevokedError``; an inactive one ``TokenRevokedError``
        too, since the server would reject it. ``resource`` applies to access tokens only: a
        refresh token serves every resource of its grant (RFC 8707 §2.2).
        """
        iss = self.issuer
        now = iss.options.clock()
        scope_set, expires_at = check_registration(
            value,
            subject=subject,
            scopes=scopes,
            expires_at=expires_at,
            expires_in=expires_in,
            token_type=token_type,
            resource=resource,
            extra=extra,
            now=now,
        )
        if resource is not None and self.kind == "refresh":
            raise InvalidArgumentError(
                "resource applies to access tokens; refresh tokens serve any resource"
            )
        hash_ = token_hash(value)
        try:
            revoked = await iss.store.is_revoked(hash_)
        except StoreError as exc:  # fail closed
            raise TokenRevokedError(
                f"cannot check the revocation list for token {hash_[:12]}: {exc}"
            ) from exc
        if revoked:
            raise TokenRevokedError(f"token {hash_[:12]} was revoked and cannot be registered")
        introspection: IntrospectionResult | None = None
        if auto_introspect is None:
            auto_introspect = iss.options.auto_introspect
        if auto_introspect and await iss.has_endpoint("introspection_endpoint"):
            introspection = await iss.introspect_value(value, _HINTS[self.kind])
        token = registered_token(
            _CLASSES[self.kind],
            value,
            issuer=iss.url,
            client_id=self._client_id,
            subject=subject,
            scopes=scope_set,
            expires_at=expires_at,
            token_type=token_type,
            resource=resource,
            extra=extra,
            introspection=introspection,
            now=now,
        )
        await iss.store.put(token)
        logger.debug("registered %s token %s", self.kind, token.short_hash)
        iss.emit("registered", token.subject, token.scopes, token_hash=token.token_hash)
        return token

    @bounded
    async def introspect(
        self,
        token: Token | str | None = None,
        *,
        hash: str | None = None,
        timeout: float | None = None,
    ) -> IntrospectionResult:
        """RFC 7662 introspection; a stored result younger than the interval is reused.

        ``token`` is a ``Token`` or a value; ``hash=`` names a stored token by its hash (or a
        unique prefix). A stored token is introspected with the hint of its stored kind.
        ``active: false`` marks the stored token unusable. A cached result is never used past
        the token's expiry.
        """
        iss = self.issuer
        now = iss.options.clock()
        value, stored = await self._resolve(token, hash)
        if (
            stored is not None
            and stored.introspection is not None
            and stored.introspected_at is not None
            and now - stored.introspected_at < iss.options.min_introspect_interval
            and (stored.expires_at is None or now < stored.expires_at)
        ):
            return IntrospectionResult.from_mapping(stored.introspection)
        result = await iss.introspect_value(value, _HINTS[_kind(stored, self.kind)])
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

    @bounded
    async def revoke(
        self,
        token: Token | str | None = None,
        *,
        hash: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """RFC 7009 revocation; the token is first put on the local revocation list.

        ``token`` is a ``Token`` or a value; ``hash=`` names a stored token by its hash (or a
        unique prefix): its stored value is sent, never the hash. A stored token is revoked as
        its stored kind (hint, children), whichever manager is asked. Revoking a refresh token
        also locally revokes the access tokens obtained with it (RFC 7009 §2.1 lets the server
        do the same). ``revoked`` events follow the server's acceptance.
        """
        value, stored = await self._resolve(token, hash)
        await self._revoke(value, stored)

    async def _revoke(self, value: str, stored: Token | None) -> None:
        """``revoke`` of a resolved token (``_resolve``)."""
        iss = self.issuer
        now = iss.options.clock()
        kind = _kind(stored, self.kind)
        hash_ = token_hash(value)
        until = now + iss.options.revoked_retention
        if stored is not None and stored.expires_at is not None:
            until = stored.expires_at
        await iss.store.revoke(hash_, until)
        children: list[Token] = []
        if kind == "refresh" and stored is not None:
            children = await self._revoke_children(stored, now)
        await iss.revoke_value(value, _HINTS[kind])
        logger.debug("revoked %s token %s", kind, hash_prefix(hash_))
        subject, scopes = (None, None) if stored is None else (stored.subject, stored.scopes)
        iss.emit("revoked", subject, scopes, token_hash=hash_)
        for child in children:
            iss.emit("revoked", child.subject, child.scopes, token_hash=child.token_hash)

    async def _revoke_children(self, refresh: Token, now: float) -> list[Token]:
        """Put the access tokens of ``refresh``'s grant on the revocation list; return them."""
        query = TokenQuery(
            issuer=self.issuer.url,
            kind="access",
            client_id=self._client_id,
            subject=refresh.subject or "",
        )
        page = await self.issuer.store.list(query)
        children = [child for child in page.items if belongs_to_grant(child, refresh)]
        for child in children:
            until = child.expires_at or now + self.issuer.options.revoked_retention
            await self.issuer.store.revoke(child.token_hash, until)
        return children

    @bounded
    async def delete(
        self,
        token: Token | str | None = None,
        *,
        hash: str | None = None,
        local_only: bool = False,
        timeout: float | None = None,
    ) -> bool:
        """Remove a token locally; with ``revoke_on_delete`` (and not ``local_only``) revoke
        it at the server first, as its stored kind (see ``revoke``).

        ``token`` is a ``Token`` or a value; ``hash=`` names a stored token by its hash (or a
        unique prefix). Returns whether a stored token was removed (then a ``removed`` event
        is emitted). The token is removed locally even when the revocation fails; then
        ``RevocationError`` is raised with the cause.
        """
        iss = self.issuer
        value, stored = await self._resolve(token, hash)
        failure: OAuth2TokenManagerError | None = None
        if iss.options.revoke_on_delete and not local_only:
            try:
                await self._revoke(value, stored)
            except OAuth2TokenManagerError as exc:
                failure = exc
        hash_ = token_hash(value)
        deleted = await iss.store.delete(hash_)
        gone = stored if stored is not None else deleted
        if gone is not None:
            iss.emit("removed", gone.subject, gone.scopes, token_hash=hash_)
        if failure is not None:
            raise RevocationError(
                f"{_kind(stored, self.kind)} token {hash_prefix(hash_)} was deleted locally "
                "but not revoked at the server",
                failure,
            )
        return gone is not None

    @bounded
    async def delete_all(
        self,
        subject: str | None = None,
        *,
        local_only: bool = False,
        timeout: float | None = None,
    ) -> int:
        """Delete every token of ``subject`` (``None``: client credentials); return the count.

        With ``revoke_on_delete`` (and not ``local_only``) each is revoked first; failures are
        collected and raised as one ``RevocationError`` after every token was removed locally.
        """
        check_subject(subject)
        page = await self.list(subject=subject)
        failures: list[OAuth2TokenManagerError] = []
        count = 0
        for token in page.items:
            try:
                if await self.delete(token, local_only=local_only):
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

    @bounded
    async def list(
        self,
        *,
        subject: str | AnyType | None = ANY,
        client_id: str | AnyType | None = None,
        status: Literal["valid", "expired", "all"] = "all",
        offset: int = 0,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> Page:
        """Stored tokens of this kind, newest first. ``subject=None``: client credentials;
        ``client_id`` defaults to this client (``ANY`` lists every client's)."""
        check_list(subject, client_id, status, offset, limit, ANY)
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

    @bounded
    async def update(
        self,
        token: Token | str | None = None,
        *,
        hash: str | None = None,
        scopes: Iterable[str] | None = _UNSET,
        expires_at: float | None = _UNSET,
        extra: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Token:
        """Change a stored token's scopes, expiry or extra metadata (merged); return it.

        ``token`` is a ``Token`` or a value; ``hash=`` names it by its hash (or a unique
        prefix)."""
        check_update(scopes, expires_at, extra, _UNSET)
        value, stored = await self._resolve(token, hash)
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

    @bounded
    async def invalidate(
        self,
        token: Token | str | None = None,
        *,
        hash: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Mark a stored token unusable (a resource server refused it); it stays listed, and a
        ``removed`` event says it is no longer handed out. ``token`` is a ``Token`` or a
        value; ``hash=`` names it by its hash (or a unique prefix)."""
        iss = self.issuer
        _, stored = await self._resolve(token, hash)
        if stored is not None and stored.active:
            await iss.store.put(stored.replace(active=False, updated_at=iss.options.clock()))
            logger.debug("%s token %s marked unusable", stored.kind, stored.short_hash)
            iss.emit("removed", stored.subject, stored.scopes, token_hash=stored.token_hash)

    @bounded
    async def expunge_expired(self, *, timeout: float | None = None) -> int:
        """Remove this manager's expired tokens (its kind, issuer and client) from the store;
        return how many. Other issuers' and clients' tokens in a shared store are left alone
        (a store-wide sweep is the store's own ``expunge_expired(now)``). A custom store whose
        ``expunge_expired`` takes no ``query`` gets a listing of them and one ``delete`` each.
        """
        iss = self.issuer
        return await expunge_kind(
            iss.store, iss.url, self._client_id, self.kind, iss.options.clock()
        )


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
        timeout: float | None = None,
    ) -> AccessToken:
        """A usable access token for ``subject`` (``None``: client credentials) and scopes.

        From the store when one is usable; else refreshed with the subject's refresh token,
        or obtained with the client-credentials grant; else ``TokenNotFoundError``. Errors of
        the server are raised as they are, never replaced by "not found". Waiting (requests,
        retries, locks) ends after ``timeout`` seconds (default: the ``deadline`` option)
        with ``DeadlineExceededError``; a token found in the store is returned at once.
        """
        iss = self.issuer
        options = iss.options
        if scopes is None:
            want: frozenset[str] | None = None
            scope_key: str | None = None
        else:
            want, scope_key = normalize(scopes)
        if match is None:
            match = options.scope_match
        else:
            check_lookup(subject, resource, match)
        try:
            group = self._groups.get((subject, resource))
        except TypeError:  # unhashable: a bad argument, which check_lookup names
            group = None
        if group is None:
            # Only arguments checked here are ever cached: a hit was checked before.
            check_lookup(subject, resource, match)
            group = self._group(subject, resource)
            if len(self._groups) >= _GROUP_CACHE_MAX:
                self._groups.clear()
            self._groups[(subject, resource)] = group
        key = scope_key if match == "exact" else None
        found, due = select(
            await iss.store.find(group, key),
            want,
            match,
            options.clock(),
            options.leeway,
            options.refresh_ahead,
        )
        if found is None or due:
            request = TokenRequest(group, key, subject, want, match, resource)
            with deadline(options, timeout):
                return await self._obtain(request, found)
        return found  # type: ignore[return-value]  # an access group; no cast() call when hot

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

    async def _obtain(self, request: TokenRequest, due: Token | None) -> AccessToken:
        """Single-flight for one cache key, in this process and across processes.

        The request's own lock comes first (the rule of ``_decide``). ``due`` is the token the
        caller found due for refresh ahead: then the lock is only tried, and a busy lock (or
        a failure cached for the key) serves that token while another caller refreshes."""
        iss = self.issuer
        key = request.lock_key
        async with iss.lock(key, wait=due is None) as acquired:
            if not acquired:
                return cast(AccessToken, due)  # another caller is refreshing it
            failure = iss.recent_failure(key)
            if failure is not None:
                if due is not None:
                    return cast(AccessToken, due)
                raise failure
            return await self._decided(request, (key,))

    async def _decided(
        self, request: TokenRequest, held: tuple[LockKey, ...], *, again: bool = True
    ) -> AccessToken:
        """Decide with what the store holds now; take the next lock the decision names and
        decide again (a waiter uses what the winner stored), or, holding them all, act.

        Holding them all, a rotated refresh token this process could not store before (a
        store outage longer than ``persist_timeout``) is written first, and the decision is
        made again with it. ``again``: an ``invalid_grant`` may still be retried once."""
        iss = self.issuer
        options = iss.options
        now = options.clock()
        access = await iss.store.find(request.group, request.scope_key)
        refresh_group = request.refresh_group
        refresh = [] if refresh_group is None else await iss.store.find(refresh_group, None)
        decision = decide(
            request, access, refresh, now=now, leeway=options.leeway, ahead=options.refresh_ahead
        )
        if isinstance(decision, UseToken):
            return cast(AccessToken, decision.token)
        if isinstance(decision, Fail):
            raise TokenNotFoundError(decision.reason)
        lock = next((key for key in decision.locks if key not in held), None)
        if lock is None:
            if refresh_group is not None and await self._write_unsaved(refresh_group):
                return await self._decided(request, held, again=again)
            return await self._act(request, decision, now, held, again)
        async with iss.lock(lock):
            return await self._decided(request, (*held, lock), again=again)

    async def _write_unsaved(self, group: GroupKey) -> bool:
        """Store the rotated refresh token of ``group`` kept in memory, if any (see ``_rotate``);
        whether there was one. A store still failing raises ``StoreError``: it stays kept."""
        iss = self.issuer
        unsaved = iss.unsaved_rotations.get(group)
        if unsaved is None:
            return False
        spent_hash, successor = unsaved
        await iss.persist(
            "a rotated refresh token", lambda: iss.store.replace(spent_hash, successor)
        )
        iss.unsaved_rotations.pop(group, None)
        logger.info("rotated refresh token %s stored after a store failure", successor.short_hash)
        return True

    async def _act(
        self,
        request: TokenRequest,
        decision: Obtain,
        now: float,
        held: tuple[LockKey, ...],
        again: bool,
    ) -> AccessToken:
        """Execute the decision's grant: request, then store what the answer says."""
        grant = decision.grant
        try:
            response = await self.issuer.request_token(
                grant.form(), grant.expected_scopes, replay_safe=grant.replay_safe
            )
        except (ResponseError, TransportError) as exc:
            return await self._failed(request, decision, exc, grant, held, again)
        try:
            with suspended():  # the answer arrived: keeping it is not cut by the deadline
                return await self._keep(request, grant, response, now)
        except (ResponseError, TransportError) as exc:
            return await self._failed(request, decision, exc, None, held, again)

    async def _failed(
        self,
        request: TokenRequest,
        decision: Obtain,
        error: ResponseError | TransportError,
        grant: Grant | None,
        held: tuple[LockKey, ...],
        again: bool,
    ) -> AccessToken:
        """Do what ``failure_plan`` says; raise ``error`` unless a kept token is served.

        Before a refresh token rejected with ``invalid_grant`` is dropped, the store is read
        again: if another process rotated the grant meanwhile (its write came late, after a
        store outage), the refresh is tried once more with the stored refresh token."""
        iss = self.issuer
        options = iss.options
        plan = failure_plan(error, grant, decision.keep, now=options.clock(), leeway=options.leeway)
        spent = decision.grant.spends
        if plan.drop_spent and spent is not None:
            refresh_group = request.refresh_group
            if (
                again
                and refresh_group is not None
                and grant_moved_on(spent, await iss.store.find(refresh_group, None))
            ):
                logger.info(
                    "refresh token %s rejected (invalid_grant), but its grant was rotated "
                    "meanwhile: refreshing with the stored one",
                    spent.short_hash,
                )
                return await self._decided(request, held, again=False)
            logger.info("refresh token %s rejected (invalid_grant): removed", spent.short_hash)
            await iss.store.delete(spent.token_hash)
            await self._drop_grant(spent)
            iss.emit("removed", spent.subject, spent.scopes, token_hash=spent.token_hash)
        iss.emit("failed", request.subject, request.scopes, error=error)
        if plan.remember:
            iss.remember_failure(request.lock_key, error)
        if plan.serve_kept and decision.keep is not None:
            logger.warning("refresh ahead failed (%s): the current token is kept", error)
            return cast(AccessToken, decision.keep)
        raise error

    async def _keep(
        self, request: TokenRequest, grant: Grant, response: TokenResponse, now: float
    ) -> AccessToken:
        """Store what a successful answer brings: a rotated refresh token first, at once,
        then the access token and the ID token; every write is ``persist``ed (shielded from
        cancellation, store errors retried for ``persist_timeout``).

        The rotated refresh token is stored before the ID token is validated (which reads the
        previous ID token and may fetch the JWK Set): the server has spent the old one, so the
        new one is the grant, and a caller cancelled (or a JWKS fetch failing) during the
        validation must not lose it. Core §12.2 still holds: the ID token, and the access
        token it came with, are stored and served only once it is valid. An ID token found
        invalid (``IDTokenError``) refuses the whole answer, its refresh token included: the
        rotation is undone (the store is as if the answer never came, fail closed, as
        before this order) and the error raised.

        A store that fails for all of ``persist_timeout``: the rotated refresh token is kept in
        memory and written first by the next refresh of its grant (``_decided``); the access
        token is served unstored (a later ``get`` obtains another)."""
        iss = self.issuer
        deadline = iss.options.monotonic() + iss.options.persist_timeout  # one for the answer
        rotation = grant.replaces(response, now)
        if rotation is not None:
            await self._rotate(*rotation, deadline)
        id_claims: dict[str, Any] | None = None
        if response.id_token is not None and grant.keeps_id_token:
            try:
                previous = await iss.id_tokens.latest(request.subject)
                id_claims = await iss.jwt.validate_id_token(
                    response.id_token, previous=previous.claims if previous is not None else None
                )
            except IDTokenError:
                if rotation is not None:
                    await self._unrotate(*rotation)
                raise
        introspection = None
        if response.expires_in is None:
            introspection = await self._introspect_for_expiry(response.access_token)
        token = issued_access_token(
            response,
            issuer=iss.url,
            client_id=self._client_id,
            subject=request.subject,
            requested=request.scopes,
            resource=request.resource,
            now=now,
            expires_at=access_expiry(response, now, introspection, iss.options.default_lifetime),
            introspection=introspection,
            grant_id=grant.grant_id,
        )

        async def write() -> None:
            await iss.store.put(token)
            if response.id_token is not None and id_claims is not None:
                await iss.id_tokens.keep(response.id_token, id_claims)

        try:
            await iss.persist("the access token", write, deadline)
            logger.debug("stored access token %s", token.short_hash)
        except StoreError as exc:
            logger.warning("access token %s served but not stored: %s", token.short_hash, exc)
        iss.emit(grant.event, request.subject, token.scopes, token_hash=token.token_hash)
        return token

    async def _rotate(self, spent: Token, successor: Token, deadline: float) -> None:
        """Store the rotated refresh token in place of ``spent`` (``persist``ed); a store that
        keeps failing leaves it in memory (``unsaved_rotations``), logged and emitted."""
        iss = self.issuer
        try:
            await iss.persist(
                "the rotated refresh token",
                lambda: iss.store.replace(spent.token_hash, successor),
                deadline,
            )
        except StoreError as exc:
            iss.unsaved_rotations[successor.group] = (spent.token_hash, successor)
            logger.error(
                "rotated refresh token %s kept in memory, not stored (%s): the next refresh "
                "of its grant writes it first",
                successor.short_hash,
                exc,
            )
            iss.emit("failed", spent.subject, spent.scopes, error=exc)
            return
        logger.debug("refresh token %s rotated to %s", spent.short_hash, successor.short_hash)
        iss.emit(
            "rotated",
            spent.subject,
            spent.scopes,
            token_hash=successor.token_hash,
            previous_hash=spent.token_hash,
        )

    async def _unrotate(self, spent: Token, successor: Token) -> None:
        """Undo ``_rotate`` for an answer refused after it (an invalid ID token)."""
        iss = self.issuer
        if iss.unsaved_rotations.pop(successor.group, None) is not None:
            return
        try:
            await iss.persist(
                "the refused answer's undoing",
                lambda: iss.store.replace(successor.token_hash, spent),
            )
        except StoreError as exc:
            logger.error(
                "refresh token %s of a refused answer stays stored: %s", successor.short_hash, exc
            )

    async def _introspect_for_expiry(self, value: str) -> IntrospectionResult | None:
        """Introspection of a new access token whose answer had no ``expires_in`` (``None``
        when the server offers none or it fails: then the default lifetime applies)."""
        iss = self.issuer
        if not await iss.has_endpoint("introspection_endpoint"):
            return None
        try:
            return await iss.introspect_value(value, "access_token")
        except OAuth2TokenManagerError as exc:
            logger.info("introspection for the expiry failed (%s): default lifetime", exc)
            return None

    async def _drop_grant(self, refresh: Token) -> None:
        """Remove the access tokens obtained with ``refresh``'s grant."""
        page = await self.list(subject=refresh.subject)
        for token in page.items:
            if belongs_to_grant(token, refresh):
                await self.issuer.store.delete(token.token_hash)


class AsyncRefreshTokenManager(_AsyncTokenManager):
    """Refresh tokens of one issuer: registered, introspected, revoked, deleted, listed."""

    kind: TokenKind = "refresh"

    async def __aenter__(self) -> AsyncRefreshTokenManager:
        return self

    @bounded
    async def get(
        self, subject: str, scopes: Iterable[str] | None = None, *, timeout: float | None = None
    ) -> RefreshToken:
        """A stored usable refresh token of ``subject`` that covers ``scopes`` (no I/O)."""
        check_subject(subject, optional=False)
        iss = self.issuer
        want = normalize(scopes)[0] if scopes is not None else None
        found = select_refresh(
            await iss.store.find(self._group(subject), None), want, iss.options.clock()
        )
        if found is None:
            raise TokenNotFoundError(f"no usable refresh token for subject {subject!r}")
        return cast(RefreshToken, found)
