"""The decision "use a stored token / obtain one with a grant / fail", the token lifecycle
rule and the failure policy. Pure functions of the stored candidates, the request and ``now``.

Rules stated once here:

- The lifecycle rule (``marks``): a token with a known expiry has two moments. It stops being
  *usable* (handed out) at ``expires_at - margin``, where the margin is the leeway (default
  60 s) but never more than half of its lifetime, so short-lived tokens are still used and a
  large leeway cannot make every token look expired (a refresh loop). It is *due* for refresh
  ahead from ``expires_at - max(margin, ahead * lifetime)`` (never, when ``ahead`` is 0 or the
  lifetime is unknown). A token of unknown expiry is usable until introspection says
  otherwise; an inactive token is never usable.
- Selection (``select``): scopes ``None`` → any usable token of the group. A set → by default a
  token whose scopes equal it (``exact``; a token whose server granted other scopes than were
  asked matches the request that obtained it, ``requested_scopes``); with ``superset`` the
  smallest stored superset of granted scopes. Among equals, the token that lives longest wins.
- A usable token that is not due is used. Otherwise a grant is chosen: for the client itself
  (``subject is None``) the client-credentials grant; for a subject, its usable refresh token
  that covers the request (or whose scope is unknown), most recently updated first, narrowed
  with ``scope=``. A refresh token is usable until its expiry (no leeway: the server decides).
  Without a grant, a due token is still used; else the decision is ``Fail``, saying why.
- Locks (``Obtain.locks``): the request's own key first (exactly the cache key: issuer,
  client, subject, scopes, resource; it is taken before the first decision, and only tried by
  a caller holding a token due for refresh ahead), then the lock of what the grant spends.
  After each lock is taken the store is read again and ``decide`` is asked again: a waiter
  uses what the winner stored, and a refresh queued behind another scope set's rotation uses
  the rotated token.
- Failure policy (``failure_plan``): ``invalid_grant`` from a grant that spends a refresh token
  removes that token and the access tokens of its grant, and is raised (never cached: the
  removal speaks for itself). Any other failure of a refresh ahead serves the token still in
  hand while it is usable, and is remembered (no stampede). A transient failure (see
  ``_retry``) is remembered; everything else is raised as it is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from ._exceptions import InvalidGrant, OAuth2TokenManagerError
from ._grants import ClientCredentialsGrant, Grant, LockKey, Refresh
from ._models import GroupKey, Token
from ._retry import is_transient
from ._scopes import ScopeMatch, scope_string

__all__ = [
    "ClientCredentialsGrant",
    "Decision",
    "Fail",
    "FailurePlan",
    "Obtain",
    "Refresh",
    "TokenRequest",
    "UseToken",
    "decide",
    "expiry_margin",
    "failure_plan",
    "grant_moved_on",
    "is_usable",
    "marks",
    "select",
    "select_refresh",
]

_NEVER = (math.inf, math.inf)


def marks(token: Token, leeway: float, ahead: float = 0.0) -> tuple[float, float]:
    """(due for refresh ahead from, usable until): the lifecycle rule of the module docstring.

    ``(inf, inf)`` for a token of unknown expiry; the first is ``inf`` when ``ahead`` is 0.
    """
    expires_at = token.expires_at
    if expires_at is None:
        return _NEVER
    margin = due = leeway
    issued_at = token.issued_at
    lifetime = expires_at - issued_at
    if issued_at > 0 and lifetime > 0:
        if lifetime / 2 < leeway:
            margin = due = lifetime / 2
        if ahead * lifetime > due:
            due = ahead * lifetime
    return (expires_at - due if ahead > 0 else math.inf), expires_at - margin


def expiry_margin(token: Token, leeway: float) -> float:
    """Seconds before ``expires_at`` at which the token stops being handed out."""
    return 0.0 if token.expires_at is None else token.expires_at - marks(token, leeway)[1]


def is_usable(token: Token, now: float, leeway: float) -> bool:
    """Active and not within its expiry margin at ``now``."""
    return token.active and now < marks(token, leeway)[1]


def _lifetime_rank(token: Token) -> float:
    return math.inf if token.expires_at is None else token.expires_at


def select(
    candidates: Sequence[Token],
    want: frozenset[str] | None,
    match: ScopeMatch,
    now: float,
    leeway: float,
    ahead: float = 0.0,
) -> tuple[Token | None, bool]:
    """The best usable token for the request, and whether it is due for refresh ahead.

    The hot path of ``get``: it allocates nothing but the result tuple.
    """
    best: Token | None = None
    best_due = False
    for token in candidates:
        if not token.active:
            continue
        due_from, until = marks(token, leeway, ahead)
        if now >= until:
            continue
        if want is not None:
            if match == "exact":
                requested = token.requested_scopes
                have = requested if requested is not None else token.scopes
                if (have or frozenset()) != want:
                    continue
            elif not (token.scopes or token.key_scopes or frozenset()) >= want:
                continue
        if best is not None:
            if match == "superset" and want is not None:
                best_size = len(best.scopes or ())
                size = len(token.scopes or ())
                if size > best_size or (
                    size == best_size and _lifetime_rank(token) <= _lifetime_rank(best)
                ):
                    continue
            elif _lifetime_rank(token) <= _lifetime_rank(best):
                continue
        best, best_due = token, now >= due_from
    return best, best_due


def select_refresh(
    candidates: Sequence[Token], want: frozenset[str] | None, now: float
) -> Token | None:
    """The most recently updated usable refresh token that covers ``want``."""
    best: Token | None = None
    for token in candidates:
        if not token.active or token.expired(now):
            continue
        if want and token.scopes is not None and not token.scopes >= want:
            continue
        if best is None or token.updated_at > best.updated_at:
            best = token
    return best


@dataclasses.dataclass(frozen=True, slots=True)
class TokenRequest:
    """What one ``get`` asks for, built once on the miss path and passed down as one value.

    ``group`` is the access tokens' group (its ``subject`` is ``""`` for the client itself),
    ``scope_key`` the canonical scope string of an exact lookup (``None``: the whole group),
    ``scopes`` the requested set (``None``: any).
    """

    group: GroupKey
    scope_key: str | None
    subject: str | None
    scopes: frozenset[str] | None
    match: ScopeMatch
    resource: str | None

    @property
    def lock_key(self) -> LockKey:
        """The single-flight lock of this request: exactly its cache key."""
        return (self.group, "*" if self.scope_key is None else self.scope_key)

    @property
    def refresh_group(self) -> GroupKey | None:
        """Where the subject's refresh tokens are (``None`` for the client itself)."""
        if self.subject is None:
            return None
        group = self.group
        return GroupKey("refresh", group.issuer, group.client_id, group.subject, "")


@dataclasses.dataclass(frozen=True, slots=True)
class UseToken:
    """Hand out this stored token."""

    token: Token


@dataclasses.dataclass(frozen=True, slots=True)
class Obtain:
    """Obtain a token with ``grant``, holding ``locks`` (in this order).

    ``keep`` is a token still usable but due for refresh ahead: most failures serve it
    (``failure_plan``).
    """

    grant: Grant
    locks: tuple[LockKey, ...]
    keep: Token | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Fail:
    """No token can be handed out or obtained; ``reason`` says why."""

    reason: str


Decision = UseToken | Obtain | Fail


def decide(
    request: TokenRequest,
    access: Sequence[Token],
    refresh: Sequence[Token],
    *,
    now: float,
    leeway: float,
    ahead: float = 0.0,
) -> Decision:
    """Choose what ``get`` does from the stored candidates (the rules above)."""
    want = request.scopes
    token, due = select(access, want, request.match, now, leeway, ahead)
    if token is not None and not due:
        return UseToken(token)
    grant: Grant
    if request.subject is None:
        grant = ClientCredentialsGrant(want, request.resource)
    else:
        spend = select_refresh(refresh, want, now)
        if spend is None:
            if token is not None:  # due for refresh ahead, but nothing to refresh it with
                return UseToken(token)
            scopes = scope_string(want) if want is not None else "any scope"
            return Fail(
                f"no usable access token for subject {request.subject!r} ({scopes}) "
                f"and no usable refresh token that covers it"
            )
        grant = Refresh(spend, want, request.resource)
    lock = grant.lock
    locks = (request.lock_key,) if lock is None else (request.lock_key, lock)
    return Obtain(grant, locks, token)


@dataclasses.dataclass(frozen=True, slots=True)
class FailurePlan:
    """What a failed token request leads to (see ``failure_plan``)."""

    drop_spent: bool
    """Remove the spent refresh token and the access tokens of its grant."""
    remember: bool
    """Serve this failure to the key's callers for ``failure_cache`` seconds."""
    serve_kept: bool
    """Hand out the token still in hand instead of raising."""


def failure_plan(
    error: OAuth2TokenManagerError,
    grant: Grant | None,
    kept: Token | None,
    *,
    now: float,
    leeway: float,
) -> FailurePlan:
    """The failure policy of the module docstring. ``grant`` is the grant whose token request
    failed (``None`` when something else failed), ``kept`` the token due for refresh ahead."""
    dead = isinstance(error, InvalidGrant)
    refresh_ahead = kept is not None and not dead and is_usable(kept, now, leeway)
    return FailurePlan(
        drop_spent=dead and grant is not None and grant.spends is not None,
        remember=not dead and (refresh_ahead or is_transient(error)),
        serve_kept=refresh_ahead,
    )


def grant_moved_on(spent: Token, stored: Sequence[Token]) -> bool:
    """Whether ``stored`` (the refresh group as the store holds it now) shows that the grant
    moved on past ``spent`` since it was read: ``spent`` is gone and another refresh token is
    there (another process rotated it). Then an ``invalid_grant`` for ``spent`` is stale: the
    refresh is tried once more with what is stored, instead of dropping the grant."""
    hashes = {token.token_hash for token in stored}
    return spent.token_hash not in hashes and bool(hashes)
