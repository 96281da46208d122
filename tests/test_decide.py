"""Unit tests of the pure decision "use / refresh / client credentials / fail" (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from oauth2_token_manager import AccessToken, RefreshToken
from oauth2_token_manager._decide import (
    ClientCredentialsGrant,
    Fail,
    Refresh,
    UseToken,
    decide,
    expiry_margin,
    is_usable,
    select_access,
    select_refresh,
)

NOW = 1_000_000.0


def at(value: str, scopes: set[str] | None, expires_at: float | None, **kw: Any) -> AccessToken:
    kw.setdefault("issued_at", NOW - 100)
    return AccessToken(value, "https://as", "c", scopes=scopes, expires_at=expires_at, **kw)


def rt(value: str, scopes: set[str] | None = None, **kw: Any) -> RefreshToken:
    return RefreshToken(value, "https://as", "c", subject="alice", scopes=scopes, **kw)


def test_margin_is_leeway_for_long_lived_tokens() -> None:
    """A one-hour token stops being handed out one leeway before expiry."""
    token = at("a", None, NOW + 3600, issued_at=NOW)
    assert expiry_margin(token, 60) == 60
    assert is_usable(token, NOW + 3539, 60)
    assert not is_usable(token, NOW + 3540, 60)


def test_margin_never_exceeds_half_the_lifetime() -> None:
    """A 30 s token with a 60 s leeway is usable for its first 15 s (no refresh loop)."""
    token = at("a", None, NOW + 30, issued_at=NOW)
    assert expiry_margin(token, 60) == 15
    assert is_usable(token, NOW + 14, 60)
    assert not is_usable(token, NOW + 15, 60)


def test_unknown_expiry_is_usable_and_inactive_is_not() -> None:
    """No expiry means usable until introspection says inactive."""
    assert is_usable(at("a", None, None), NOW, 60)
    assert not is_usable(at("a", None, None, active=False), NOW, 60)


def test_expired_token_is_not_usable() -> None:
    """A token past expiry is never handed out (expires_at=0 is not 'never')."""
    assert not is_usable(at("a", None, 0.0, issued_at=0.0), NOW, 0)


def test_exact_match_requires_equal_scopes() -> None:
    """exact: a token with more scopes than asked is not handed out."""
    wide = at("w", {"a", "b"}, NOW + 3600)
    assert select_access([wide], frozenset({"a"}), "exact", NOW, 60) is None
    assert select_access([wide], frozenset({"a", "b"}), "exact", NOW, 60) is wide


def test_superset_match_picks_smallest_superset() -> None:
    """superset: the narrowest token that covers the request wins."""
    wide = at("w", {"a", "b", "c"}, NOW + 3600)
    narrow = at("n", {"a", "b"}, NOW + 100)
    other = at("o", {"b"}, NOW + 3600)
    chosen = select_access([wide, narrow, other], frozenset({"a"}), "superset", NOW, 60)
    assert chosen is narrow


def test_none_scopes_take_the_longest_lived_token() -> None:
    """Scopes None: any usable token; the one that lives longest."""
    short = at("s", {"a"}, NOW + 200)
    long = at("l", {"b"}, NOW + 3000)
    assert select_access([short, long], None, "exact", NOW, 60) is long


def test_select_refresh_requires_superset_and_prefers_newest() -> None:
    """A refresh token must cover the request; the most recently updated wins."""
    old = rt("old", {"a", "b"}, updated_at=1)
    new = rt("new", {"a", "b"}, updated_at=2)
    narrow = rt("narrow", {"a"}, updated_at=3)
    assert select_refresh([old, new, narrow], frozenset({"a", "b"}), NOW) is new
    assert select_refresh([narrow], frozenset({"b"}), NOW) is None


def test_select_refresh_accepts_unknown_scopes_and_skips_dead() -> None:
    """Unknown scopes may serve any request; expired or inactive tokens are skipped."""
    unknown = rt("u")
    expired = rt("e", {"a"}, expires_at=NOW - 1)
    inactive = rt("i", {"a"}, active=False)
    assert select_refresh([expired, inactive, unknown], frozenset({"a"}), NOW) is unknown


def test_decide_uses_a_stored_token() -> None:
    """A usable stored token is used as is."""
    token = at("a", {"x"}, NOW + 3600)
    decision = decide(
        [token], [], subject=None, want=frozenset({"x"}), match="exact", now=NOW, leeway=60
    )
    assert decision == UseToken(token)


def test_decide_client_credentials_on_miss_without_subject() -> None:
    """subject None and no usable token: the client-credentials grant."""
    decision = decide(
        [], [], subject=None, want=frozenset({"x"}), match="exact", now=NOW, leeway=60
    )
    assert decision == ClientCredentialsGrant(frozenset({"x"}))


def test_decide_refreshes_for_a_subject() -> None:
    """A subject's miss uses its covering refresh token, narrowed to the request."""
    refresh = rt("r", {"x", "y"})
    decision = decide(
        [], [refresh], subject="alice", want=frozenset({"x"}), match="exact", now=NOW, leeway=60
    )
    assert decision == Refresh(refresh, frozenset({"x"}))


@pytest.mark.parametrize("want", [frozenset({"z"}), None])
def test_decide_fails_with_a_reason(want: frozenset[str] | None) -> None:
    """Without a covering refresh token the decision is Fail, naming the subject."""
    decision = decide(
        [],
        [rt("r", {"x"})] if want else [],
        subject="alice",
        want=want,
        match="exact",
        now=NOW,
        leeway=60,
    )
    assert isinstance(decision, Fail)
    assert "alice" in decision.reason
