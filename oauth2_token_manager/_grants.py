"""Grants as values: each way of obtaining an access token says what the manager must do.

A grant value (RFC 6749 §4.4 client credentials, §6 refresh) carries everything the executor
needs, so that the manager never chooses anything itself:

- ``form()``: the token request body (client authentication is added by
  ``_protocol.build_form_request``, the same for every grant); ``scope`` is sent only when
  scopes were asked for (on refresh it narrows the grant); ``resource`` (RFC 8707) when given.
- ``replay_safe``: whether the request may be sent again after a failure the server may have
  seen. Client credentials may; a refresh may not (the server may have rotated the refresh
  token already, and replaying the old one revokes the whole grant on servers with reuse
  detection; see ``_retry``).
- ``expected_scopes``: the scope an answer without ``scope`` stands for (RFC 6749 §5.1: the
  requested scope; a refresh that asked for none gets the grant's own scope).
- ``spends``: the stored token the grant uses up (the refresh token), or ``None``. Its
  ``lock`` serialises every grant that spends a token of the same subject, across scope sets
  and processes, so that a rotation never races; ``invalid_grant`` removes the spent token and
  the access tokens of its grant.
- ``replaces(response, now)``: what a successful answer replaces in the store: the spent
  refresh token and its successor when the server rotated it (written before anything else);
  ``None`` when nothing is replaced (an answer without ``refresh_token`` keeps the old one).
- ``grant_id``: the grant the issued access token belongs to (``_records.grant_of`` of the
  spent refresh token), so that revoking or losing the grant finds it.
- ``keeps_id_token``: whether an ID token in the answer is validated and kept as the
  subject's latest (OpenID Connect Core §12.2).
- ``event``: what its success is called in ``TokenEvent``.

The issued access token itself is built by ``_records.issued_access_token`` from the answer
and the request, the same for every grant. Adding a grant is a new value here and a rule in
``_decide.decide`` that chooses it; the managers' control flow does not change.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Protocol

from ._events import EventKind
from ._models import GroupKey, Token
from ._protocol import TokenResponse, client_credentials_form, refresh_form
from ._records import grant_of, rotated_refresh_token

__all__ = ["ClientCredentialsGrant", "Grant", "LockKey", "Refresh"]

LockKey = tuple[GroupKey, str]
"""A single-flight lock: a group and a scope key (``"*"``: any scope; ``"grant"``: the grant)."""


class Grant(Protocol):
    """What every grant value offers (see the module docstring)."""

    @property
    def replay_safe(self) -> bool: ...

    @property
    def event(self) -> EventKind: ...

    @property
    def keeps_id_token(self) -> bool: ...

    @property
    def spends(self) -> Token | None: ...

    @property
    def lock(self) -> LockKey | None: ...

    @property
    def grant_id(self) -> str | None: ...

    @property
    def expected_scopes(self) -> frozenset[str] | None: ...

    def form(self) -> dict[str, str]: ...

    def replaces(self, response: TokenResponse, now: float) -> tuple[Token, Token] | None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class ClientCredentialsGrant:
    """The client-credentials grant (RFC 6749 §4.4), for the client itself."""

    scopes: frozenset[str] | None
    resource: str | None = None

    replay_safe: ClassVar[bool] = True
    event: ClassVar[EventKind] = "obtained"
    keeps_id_token: ClassVar[bool] = False
    spends: ClassVar[None] = None
    lock: ClassVar[None] = None
    grant_id: ClassVar[None] = None

    @property
    def expected_scopes(self) -> frozenset[str] | None:
        """The scope an answer without ``scope`` stands for: the requested one."""
        return self.scopes

    def form(self) -> dict[str, str]:
        """The token request body."""
        return client_credentials_form(self.scopes, self.resource)

    def replaces(self, response: TokenResponse, now: float) -> None:
        """Nothing: the client's tokens stand alone."""
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Refresh:
    """The refresh-token grant (RFC 6749 §6) with ``refresh_token``, narrowed to ``scopes``."""

    refresh_token: Token
    scopes: frozenset[str] | None
    resource: str | None = None

    replay_safe: ClassVar[bool] = False
    event: ClassVar[EventKind] = "refreshed"
    keeps_id_token: ClassVar[bool] = True

    @property
    def spends(self) -> Token:
        """The refresh token this grant uses (and may rotate)."""
        return self.refresh_token

    @property
    def lock(self) -> LockKey:
        """One refresh at a time among the subject's refresh tokens."""
        return (self.refresh_token.group, "grant")

    @property
    def expected_scopes(self) -> frozenset[str] | None:
        """Without ``scope`` in the answer: the scopes asked for, else the grant's own."""
        return self.scopes if self.scopes else self.refresh_token.scopes

    def form(self) -> dict[str, str]:
        """The token request body (``scope`` narrows the grant)."""
        return refresh_form(self.refresh_token.value, self.scopes, self.resource)

    @property
    def grant_id(self) -> str:
        """The grant of the spent refresh token."""
        return grant_of(self.refresh_token)

    def replaces(self, response: TokenResponse, now: float) -> tuple[Token, Token] | None:
        """(spent, successor) when the server rotated the refresh token; else ``None`` (an
        answer without ``refresh_token`` keeps the old one)."""
        spent = self.refresh_token
        if response.refresh_token and response.refresh_token != spent.value:
            return spent, rotated_refresh_token(spent, response.refresh_token, now)
        return None
