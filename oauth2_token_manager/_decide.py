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
from ._scopes import ScopeMatch, scope_string

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
    "select_fresh",
    "select_refresh",
    "usable_until",
]


def _margins(token: Token, leeway: float, ahead: float) -> tuple[float, float]:
    """(expiry margin, refresh-ahead margin) in seconds before ``expires_at``: the rule of
    the module docstring. ``_select`` restates it inline (the hot path of ``get``)."""
    lifetime = (token.expires_at or 0.0) - token.issued_at
    margin = leeway
    if token.issued_at > 0 and lifetime > 0:
        if lifetime / 2 < leeway:
            margin = lifetime / 2
        return margin, max(margin, ahead * lifetime)
    return margin, margin


def expiry_margin(token: Token, leeway: float) -> float:
    """Seconds before ``expires_at`` at which the token stops being handed out."""
    return 0.0 if token.expires_at is None else _margins(token, leeway, 0.0)[0]


def is_usable(token: Token, now: float, leeway: float) -> bool:
    """Active and not within its expiry margin at ``now``."""
    if not token.active:
        return False
    return token.expires_at is None or now < token.expires_at - expiry_margin(token, leeway)


def refresh_at(token: Token, leeway: float, ahead: float) -> float:
    """The moment from which a usable token is due for refresh ahead (inf: never)."""
    if token.expires_at is None or ahead <= 0:
        return float("inf")
    return token.expires_at - _margins(token, leeway, ahead)[1]


def usable_until(token: Token, leeway: float) -> float:
    """The moment from which ``is_usable`` turns false by time alone (inf: never)."""
    if token.expires_at is None:
        return float("inf")
    return token.expires_at - expiry_margin(token, leeway)


def _lifetime_rank(token: Token) -> float:
    return float("inf") if token.expires_at is None else token.expires_at


def _select(
    candidates: Sequence[Token],
    want: frozenset[str] | None,
    match: ScopeMatch,
    now: float,
    leeway: float,
    ahead: float,
) -> tuple[Token | None, bool]:
    """The best usable token for the request and whether it is due for refresh ahead."""
    best: Token | None = None
    best_due = False
    for token in candidates:
        if not token.active:
            continue
        due = False
        expires_at = token.expires_at
        if expires_at is not None:  # _margins, inlined
            lifetime = expires_at - token.issued_at
            margin = leeway
            due_margin = leeway
            if token.issued_at > 0 and lifetime > 0:
                if lifetime / 2 < leeway:
                    margin = due_margin = lifetime / 2
                if ahead * lifetime > due_margin:
                    due_margin = ahead * lifetime
            if now >= expires_at - margin:
                continue
            due = ahead > 0 and now >= expires_at - due_margin
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
        best, best_due = token, due
    return best, best_due


def select_access(
    candidates: Sequence[Token],
    want: frozenset[str] | None,
    match: ScopeMatch,
    now: float,
    leeway: float,
    ahead: float = 0.0,
) -> Token | None:
    """The best usable token for the request, or ``None``."""
    return _select(candidates, want, match, now, leeway, ahead)[0]


def select_fresh(
    candidates: Sequence[Token],
    want: frozenset[str] | None,
    match: ScopeMatch,
    now: float,
    leeway: float,
    ahead: float,
) -> tuple[Token | None, bool]:
    """``select_access`` and whether the token is due for refresh ahead (``get``'s path)."""
    return _select(candidates, want, match, now, leeway, ahead)


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
    token, due = _select(access, want, match, now, leeway, ahead)
    if token is not None and not due:
        return UseToken(token)
    if subject is None:
        return ClientCredentialsGrant(want)
    rt = select_refresh(refresh, want, now)
    if rt is not None:
        return Refresh(rt, want)
    if token is not None:  # due for refresh ahead, but nothing to refresh it with
        return UseToken(token)
    scopes = scope_string(want) if want is not None else "any scope"
    return Fail(
        f"no usable access token for subject {subject!r} ({scopes}) "
        f"and no usable refresh token that covers it"
    )
