"""The decision "use a stored token / refresh / client-credentials grant / fail", and the
token lifecycle rules. Pure functions of the stored candidates, the request and ``now``.

Rules stated once here:

- A token is *usable* when it is active and not within its margin of expiry. The margin is the
  leeway (default 60 s) but never more than half of the token's lifetime, so short-lived tokens
  are still used and a large leeway cannot make every token look expired (a refresh loop).
  A token of unknown expiry is usable until introspection says otherwise.
- Scopes ``None`` → any usable token of the group. A list → by default a token whose scopes
  equal it (``exact``; a token whose server granted other scopes than were asked matches the
  request that obtained it, ``requested_scopes``); with ``superset`` the smallest stored
  superset of granted scopes. Among equals, the token that lives longest wins.
- On a miss: a usable refresh token of the subject whose scopes are a superset of the request
  (or unknown), most recently updated first → refresh, narrowed with ``scope=``. For client
  credentials (``subject is None``) → the client-credentials grant. Else → fail, saying why.
- A refresh token is usable until its expiry (no leeway: the server decides).
- Refresh ahead: in the last ``ahead`` fraction of its lifetime (never less than its expiry
  margin) a usable token is *due*: one caller obtains a new one while the others keep using
  it. If no new token can be obtained (no refresh token), the due token is still used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ._models import Token
from ._scopes import ScopeMatch

__all__ = [
    "ClientCredentialsGrant",
    "Decision",
    "Fail",
    "Refresh",
    "UseToken",
    "decide",
    "expiry_margin",
    "is_usable",
    "refresh_at",
    "select_access",
    "select_refresh",
    "usable_until",
]


def expiry_margin(token: Token, leeway: float) -> float:
    """Seconds before ``expires_at`` at which the token stops being handed out."""
    if token.expires_at is None:
        return 0.0
    half = (token.expires_at - token.issued_at) / 2
    if token.issued_at > 0 and 0 < half < leeway:
        return half
    return leeway


def is_usable(token: Token, now: float, leeway: float) -> bool:
    """Active and not within its expiry margin at ``now`` (on the hot path: kept inline)."""
    if not token.active:
        return False
    expires_at = token.expires_at
    if expires_at is None:
        return True
    half = (expires_at - token.issued_at) / 2
    if token.issued_at > 0 and 0 < half < leeway:
        return now < expires_at - half
    return now < expires_at - leeway


def refresh_at(token: Token, leeway: float, ahead: float) -> float:
    """The moment from which a usable token is due for refresh ahead (inf: never)."""
    if token.expires_at is None or ahead <= 0:
        return float("inf")
    margin = expiry_margin(token, leeway)
    if token.issued_at > 0 and token.expires_at > token.issued_at:
        margin = max(margin, ahead * (token.expires_at - token.issued_at))
    return token.expires_at - margin


def usable_until(token: Token, leeway: float) -> float:
    """The moment from which ``is_usable`` turns false by time alone (inf: never)."""
    if token.expires_at is None:
        return float("inf")
    return token.expires_at - expiry_margin(token, leeway)


def _lifetime_rank(token: Token) -> float:
    return float("inf") if token.expires_at is None else token.expires_at


def select_access(
    candidates: Sequence[Token],
    want: frozenset[str] | None,
    match: ScopeMatch,
    now: float,
    leeway: float,
) -> Token | None:
    """The best usable token for the request, or ``None``."""
    best: Token | None = None
    for token in candidates:
        if not is_usable(token, now, leeway):
            continue
        if want is not None:
            if match == "exact":
                if (token.key_scopes or frozenset()) != want:
                    continue
            elif not (token.scopes or token.key_scopes or frozenset()) >= want:
                continue
        if best is None:
            best = token
            continue
        if match == "superset" and want is not None:
            best_size = len(best.scopes or ())
            size = len(token.scopes or ())
            if size != best_size:
                if size < best_size:
                    best = token
                continue
        if _lifetime_rank(token) > _lifetime_rank(best):
            best = token
    return best


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
class UseToken:
    """Hand out this stored token."""

    token: Token


@dataclasses.dataclass(frozen=True, slots=True)
class Refresh:
    """Refresh with this refresh token, narrowing to ``scopes`` when given."""

    refresh_token: Token
    scopes: frozenset[str] | None


@dataclasses.dataclass(frozen=True, slots=True)
class ClientCredentialsGrant:
    """Obtain a new token with the client-credentials grant."""

    scopes: frozenset[str] | None


@dataclasses.dataclass(frozen=True, slots=True)
class Fail:
    """No token can be handed out or obtained; ``reason`` says why."""

    reason: str


Decision = UseToken | Refresh | ClientCredentialsGrant | Fail


def decide(
    access: Sequence[Token],
    refresh: Sequence[Token],
    *,
    subject: str | None,
    want: frozenset[str] | None,
    match: ScopeMatch,
    now: float,
    leeway: float,
    ahead: float = 0.0,
) -> Decision:
    """Choose what ``get`` does from the stored candidates."""
    token = select_access(access, want, match, now, leeway)
    if token is not None and now < refresh_at(token, leeway, ahead):
        return UseToken(token)
    if subject is None:
        return ClientCredentialsGrant(want)
    rt = select_refresh(refresh, want, now)
    if rt is not None:
        return Refresh(rt, want)
    if token is not None:  # due for refresh ahead, but nothing to refresh it with
        return UseToken(token)
    scopes = " ".join(sorted(want)) if want is not None else "any scope"
    return Fail(
        f"no usable access token for subject {subject!r} ({scopes}) "
        f"and no usable refresh token that covers it"
    )
