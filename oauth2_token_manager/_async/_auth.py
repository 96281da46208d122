"""``AsyncTokenAuth``: an ``httpx.Auth`` that sends a managed Bearer token and retries once.

Made by ``AsyncAccessTokenManager.auth(...)``; usable on any plain ``httpx.AsyncClient``
(``TokenAuth``, generated from this file, on any ``httpx.Client``). Fetching a token is I/O
under a lock, so the flow overrides ``async_auth_flow`` (httpx's rule for such schemes) and
goes through the manager: caching, refresh and single-flight apply to every request.

- ``Authorization: Bearer <token>`` (the scheme is always written ``Bearer``).
- A 401 with ``error="invalid_token"`` (or no error): the token is marked unusable in the
  store, a new one is obtained and the request is sent once more; a second 401 is returned.
  With ``retry_insufficient_scope``, a 403 ``insufficient_scope`` with ``scope=`` retries once
  with a token for that scope. The request body is read first so that it can be replayed.
- Only a 401 (or 403) answering a request that carried the token counts: one that comes from
  a redirect target the token was not sent to is returned as it is (the token stays valid).
- ``allowed_origins``: the token is only sent to these origins (``scheme://host[:port]``, a
  list; a single string, an origin without a scheme or with a path is ``InvalidArgumentError``);
  a request elsewhere goes out without it. httpx drops ``Authorization`` on redirects to
  another origin, so a redirect never carries the token away either.
- A token is never sent over plain ``http`` (RFC 6750 §5.3), except to a loopback host when
  the issuer has ``allow_insecure_loopback``, as for the authorization server's endpoints:
  such a request raises ``InsecureEndpointError`` before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import httpx

from .._arguments import check_subject
from .._config import IssuerOptions
from .._decide import marks
from .._exceptions import InvalidArgumentError
from .._flows import AsyncAuthFlow
from .._metadata import check_url
from .._models import AccessToken, Token
from .._scopes import normalize
from .._www_authenticate import RetryNewToken, retry_action

__all__ = ["AsyncAccessTokenSource", "AsyncTokenAuth", "allowed_origin_set", "origin_of"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: httpx.URL | str) -> str:
    """``scheme://host:port`` of a URL, with the default port made explicit."""
    url = httpx.URL(url) if isinstance(url, str) else url
    port = url.port or _DEFAULT_PORTS.get(url.scheme, 0)
    return f"{url.scheme}://{url.host}:{port}"


def allowed_origin_set(origins: Iterable[str]) -> frozenset[str]:
    """The origins of ``allowed_origins``, each ``scheme://host:port``; ``InvalidArgumentError``
    for a single string, an empty list, or an entry that is not an http(s) origin (no scheme,
    a path, a query, user info): any of these would silently never send the token."""
    if isinstance(origins, (str, bytes)):
        raise InvalidArgumentError(
            "allowed_origins is a list of origins such as ['https://api.example'], not a string"
        )
    found: set[str] = set()
    for origin in origins:
        try:
            url = httpx.URL(origin) if isinstance(origin, str) else None
        except httpx.InvalidURL:
            url = None
        if (
            url is None
            or url.scheme not in _DEFAULT_PORTS
            or not url.host
            or url.raw_path not in (b"", b"/")
            or url.query
            or url.fragment
            or url.userinfo
        ):
            raise InvalidArgumentError(
                f"allowed origin {origin!r} is not an origin such as 'https://api.example:8443'"
            )
        found.add(origin_of(url))
    if not found:
        raise InvalidArgumentError("allowed_origins is empty: the token would never be sent")
    return frozenset(found)


class _IssuerView(Protocol):
    @property
    def store(self) -> object: ...

    @property
    def options(self) -> IssuerOptions: ...


class AsyncAccessTokenSource(Protocol):
    """What ``AsyncTokenAuth`` needs of an access-token manager (it imports none)."""

    @property
    def issuer(self) -> _IssuerView: ...

    async def get(
        self,
        subject: str | None = None,
        scopes: Iterable[str] | None = None,
        *,
        resource: str | None = None,
    ) -> AccessToken: ...

    async def invalidate(self, token: Token | str) -> None: ...


class AsyncTokenAuth(httpx.Auth):
    """Bearer tokens from an access-token manager for every request of an httpx client."""

    requires_request_body = True  # a retried request must be replayable
    _client_kind = "httpx.AsyncClient"

    def __init__(
        self,
        manager: AsyncAccessTokenSource,
        scopes: Iterable[str] | None = None,
        subject: str | None = None,
        *,
        resource: str | None = None,
        allowed_origins: Iterable[str] | None = None,
        retry_insufficient_scope: bool = False,
    ) -> None:
        check_subject(subject)
        self.manager = manager
        self.scopes = None if scopes is None else sorted(normalize(scopes)[0])
        self.subject = subject
        self.resource = resource
        self.allowed_origins = (
            None if allowed_origins is None else allowed_origin_set(allowed_origins)
        )
        self.retry_insufficient_scope = retry_insufficient_scope
        # (token, usable until, store version): reused while a process-local store is unchanged.
        self._memo: tuple[AccessToken, float, int] | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(scopes={self.scopes!r}, subject={self.subject!r}, "
            f"allowed_origins={sorted(self.allowed_origins or ()) or None!r})"
        )

    def auth_flow(self, request: httpx.Request) -> Any:
        """httpx calls this only from the other client flavour: refuse loudly, never send
        the request without its token."""
        raise RuntimeError(f"{type(self).__name__} works with {self._client_kind} only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncAuthFlow:
        """Add the token; after a 401 (or an allowed 403) get another and send once more."""
        if self.allowed_origins is not None and origin_of(request.url) not in self.allowed_origins:
            yield request
            return
        manager = self.manager
        if request.url.scheme != "https":  # plain http only to an allowed loopback host
            check_url(
                str(request.url),
                allow_insecure_loopback=manager.issuer.options.allow_insecure_loopback,
            )
        token = await self._token()
        header = "Bearer " + token.value
        request.headers["Authorization"] = header
        response = yield request
        status = response.status_code
        if status != 401 and status != 403:
            return
        if response.history and response.request.headers.get("Authorization") != header:
            return  # a redirect target's answer: the token was never sent there
        action = retry_action(
            status,
            response.headers.get_list("www-authenticate"),
            retry_insufficient_scope=self.retry_insufficient_scope,
        )
        if action is None:
            return
        if isinstance(action, RetryNewToken):
            self._memo = None
            await manager.invalidate(token)
            token = await self._token()
        else:
            token = await manager.get(self.subject, action.scopes, resource=self.resource)
        request.headers["Authorization"] = "Bearer " + token.value
        yield request

    async def _token(self) -> AccessToken:
        """The manager's token; with a process-local store, the last one while the store is
        unchanged and the token still usable (the same answer, without the lookup)."""
        issuer = self.manager.issuer
        version = getattr(issuer.store, "version", None)
        memo = self._memo
        if (
            memo is not None
            and version is not None
            and memo[2] == version
            and issuer.options.clock() < memo[1]
        ):
            return memo[0]
        token = await self.manager.get(self.subject, self.scopes, resource=self.resource)
        if version is not None:  # read before ``get``: a write meanwhile voids the memo
            options = issuer.options
            # reused until due for refresh ahead, or until unusable (the earlier of the two)
            until = min(marks(token, options.leeway, options.refresh_ahead))
            self._memo = (token, until, version)
        return token
