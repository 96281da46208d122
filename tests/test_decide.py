"""Unit tests of the pure decision "use / obtain with a grant / fail", the lifecycle rule and
the failure policy (no I/O)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from oauth2_token_manager import (
    AccessToken,
    GroupKey,
    HTTPStatusError,
    InvalidClient,
    InvalidGrant,
    OAuth2TokenManagerError,
    RefreshToken,
    TransportError,
)
from oauth2_token_manager._decide import (
    ClientCredentialsGrant,
    Decision,
    Fail,
    FailurePlan,
    Obtain,
    Refresh,
    TokenRequest,
    UseToken,
    decide,
    expiry_margin,
    failure_plan,
    is_usable,
    select,
    select_refresh,
)
from oauth2_token_manager._models import Token
from oauth2_token_manager._scopes import ScopeMatch

NOW = 1_000_000.0


def select_access(
    candidates: list[Token],
    want: frozenset[str] | None,
    match: ScopeMatch,
    now: float,
    leeway: float,
) -> Token | None:
    """The token ``select`` chooses (without refresh ahead)."""
    return select(candidates, want, match, now, leeway)[0]


def request(subject: str | None, want: frozenset[str] | None) -> TokenRequest:
    """The request of ``get(subject, want)`` (exact match)."""
    group = GroupKey("access", "https://as", "c", subject or "", "")
    key = None if want is None else " ".join(sorted(want))
    return TokenRequest(group, key, subject, want, "exact", None)


def decide_for(
    access: list[Token],
    refresh: list[Token],
    *,
    subject: str | None,
    want: frozenset[str] | None,
    now: float,
    leeway: float,
) -> Decision:
    """``decide`` for ``get(subject, want)``."""
    return decide(request(subject, want), access, refresh, now=now, leeway=leeway)


def grant_of(decision: Decision) -> object:
    """The grant an ``Obtain`` decision names."""
    assert isinstance(decision, Obtain)
    return decision.grant


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
    decision = decide_for([token], [], subject=None, want=frozenset({"x"}), now=NOW, leeway=60)
    assert decision == UseToken(token)


def test_decide_client_credentials_on_miss_without_subject() -> None:
    """subject None and no usable token: the client-credentials grant."""
    decision = decide_for([], [], subject=None, want=frozenset({"x"}), now=NOW, leeway=60)
    assert grant_of(decision) == ClientCredentialsGrant(frozenset({"x"}))


def test_decide_refreshes_for_a_subject() -> None:
    """A subject's miss uses its covering refresh token, narrowed to the request."""
    refresh = rt("r", {"x", "y"})
    decision = decide_for([], [refresh], subject="alice", want=frozenset({"x"}), now=NOW, leeway=60)
    assert grant_of(decision) == Refresh(refresh, frozenset({"x"}))


@pytest.mark.parametrize("want", [frozenset({"z"}), None])
def test_decide_fails_with_a_reason(want: frozenset[str] | None) -> None:
    """Without a covering refresh token the decision is Fail, naming the subject."""
    decision = decide_for(
        [], [rt("r", {"x"})] if want else [], subject="alice", want=want, now=NOW, leeway=60
    )
    assert isinstance(decision, Fail)
    assert "alice" in decision.reason


# --- the lifecycle rule, pinned to its definition ------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    issued_at=st.one_of(st.just(0.0), st.floats(1, 4e9, allow_nan=False)),
    lifetime=st.one_of(st.none(), st.floats(-100, 1e5, allow_nan=False)),
    leeway_part=st.floats(0, 1, allow_nan=False),
    ahead=st.one_of(st.just(0.0), st.floats(0, 0.99, allow_nan=False)),
    active=st.booleans(),
)
@example(issued_at=1000.0, lifetime=100.0, leeway_part=0.1, ahead=0.15, active=True)
@example(issued_at=1000.0, lifetime=100.0, leeway_part=0.8, ahead=0.6, active=True)
@example(issued_at=0.0, lifetime=100.0, leeway_part=0.3, ahead=0.5, active=True)
def test_usable_and_due_follow_the_stated_rule(
    issued_at: float, lifetime: float | None, leeway_part: float, ahead: float, active: bool
) -> None:
    """``select`` hands out a token exactly when the docstring's rule calls it usable, and
    flags it due exactly when the rule says refresh ahead has begun (refresh_ahead cases),
    probed at each mark the rule defines and just around it."""
    scale = max(abs(lifetime or 0.0), 1.0)
    leeway = leeway_part * scale  # from no leeway to one larger than half the lifetime
    expires_at = None if lifetime is None else issued_at + lifetime
    token = AccessToken(
        "t", "https://as", "c", expires_at=expires_at, issued_at=issued_at, active=active
    )
    # The rule, restated from the module docstring: the two marks.
    until = due_from = math.inf
    if expires_at is not None:
        known = issued_at > 0 and expires_at - issued_at > 0
        margin = min(leeway, (expires_at - issued_at) / 2) if known else leeway
        until = expires_at - margin
        if ahead > 0:
            due_from = expires_at - (
                max(margin, ahead * (expires_at - issued_at)) if known else margin
            )
    probes = [issued_at + scale * p for p in (-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5)]
    for mark in (until, due_from):
        if math.isfinite(mark):
            step = max(abs(mark), 1.0) * 1e-9
            probes += [mark - step, mark, mark + step]
    for now in probes:
        usable = active and now < until
        chosen, flagged = select([token], None, "exact", now, leeway, ahead)
        assert (chosen is token) == usable, now
        assert is_usable(token, now, leeway) == usable, now
        if usable:
            assert flagged == (now >= due_from), now


# --- decisions carry what the executor needs --------------------------------------------------


def test_client_credentials_decision_names_its_lock_and_scopes() -> None:
    """A miss for the client: the client-credentials grant, sending and expecting the asked
    scopes, under the request's own lock only."""
    want = frozenset({"x", "y"})
    decision = decide_for([], [], subject=None, want=want, now=NOW, leeway=60)
    assert isinstance(decision, Obtain)
    assert decision.locks == (request(None, want).lock_key,)
    assert decision.grant.form() == {"grant_type": "client_credentials", "scope": "x y"}
    assert decision.grant.expected_scopes == want
    assert decision.grant.replay_safe and decision.grant.spends is None
    assert decision.keep is None


def test_refresh_decision_takes_the_grant_lock_after_the_key_lock() -> None:
    """A subject's miss: the refresh grant spends the chosen refresh token, under the request's
    lock and then the subject's grant lock; it is never replayed."""
    refresh = rt("r", {"x", "y"})
    decision = decide_for([], [refresh], subject="alice", want=frozenset({"x"}), now=NOW, leeway=60)
    assert isinstance(decision, Obtain)
    assert decision.locks == (request("alice", frozenset({"x"})).lock_key, (refresh.group, "grant"))
    grant = decision.grant
    assert grant.spends is refresh and not grant.replay_safe
    assert grant.form() == {"grant_type": "refresh_token", "refresh_token": "r", "scope": "x"}
    assert grant.grant_id == refresh.token_hash


def test_refresh_without_scopes_expects_the_grants_own_scope() -> None:
    """A refresh that asks for no scope sends none and reads an answer without scope as the
    refresh token's scope (RFC 6749 §5.1)."""
    refresh = rt("r", {"x", "y"})
    decision = decide_for([], [refresh], subject="alice", want=None, now=NOW, leeway=60)
    grant = grant_of(decision)
    assert isinstance(grant, Refresh)
    assert "scope" not in grant.form()
    assert grant.expected_scopes == frozenset({"x", "y"})


def test_a_due_token_is_kept_while_the_grant_runs() -> None:
    """A token due for refresh ahead is carried as ``keep`` when a grant can replace it, and
    simply used when none can."""
    due = at("a", {"x"}, NOW + 50, issued_at=NOW - 950)  # 95 % of its life gone
    with_refresh = decide(
        request("alice", frozenset({"x"})), [due], [rt("r")], now=NOW, leeway=10, ahead=0.1
    )
    assert isinstance(with_refresh, Obtain) and with_refresh.keep is due
    without = decide(request("alice", frozenset({"x"})), [due], [], now=NOW, leeway=10, ahead=0.1)
    assert without == UseToken(due)


def test_the_request_lock_is_the_cache_key() -> None:
    """The single-flight key is exactly (group, scope key), ``*`` when the whole group is read."""
    req = request(None, frozenset({"b", "a"}))
    assert req.lock_key == (req.group, "a b")
    assert request(None, None).lock_key == (request(None, None).group, "*")
    assert request(None, None).refresh_group is None
    assert request("alice", None).refresh_group == GroupKey(
        "refresh", "https://as", "c", "alice", ""
    )


# --- the failure policy ---------------------------------------------------------------------


def _error(kind: str) -> OAuth2TokenManagerError:
    if kind == "invalid_grant":
        return InvalidGrant("invalid_grant", status_code=400)
    if kind == "503":
        return HTTPStatusError("unavailable", status_code=503)
    if kind == "transport":
        return TransportError("https://as/token", "ConnectError: refused")
    return InvalidClient("invalid_client", status_code=401)


@pytest.mark.parametrize(
    ("kind", "refresh_ahead", "drop", "remember", "serve"),
    [
        ("invalid_grant", False, True, False, False),
        ("invalid_grant", True, True, False, False),
        ("503", False, False, True, False),
        ("transport", False, False, True, False),
        ("invalid_client", False, False, False, False),
        ("503", True, False, True, True),
        ("invalid_client", True, False, True, True),
    ],
)
def test_failure_plan(
    kind: str, refresh_ahead: bool, drop: bool, remember: bool, serve: bool
) -> None:
    """What is dropped, remembered and served after a failed token request: invalid_grant
    drops the spent refresh token and is raised; a refresh ahead serves the kept token."""
    grant = Refresh(rt("r"), None)
    kept = at("a", None, NOW + 50, issued_at=NOW - 950) if refresh_ahead else None
    plan = failure_plan(_error(kind), grant, kept, now=NOW, leeway=10)
    assert plan == FailurePlan(drop_spent=drop, remember=remember, serve_kept=serve)


def test_failure_plan_never_serves_an_unusable_token_or_drops_without_a_spent_token() -> None:
    """A kept token that became unusable meanwhile is not served; invalid_grant from a grant
    that spends nothing (or from another request) drops nothing."""
    stale = at("a", None, NOW + 5, issued_at=NOW - 995)
    plan = failure_plan(_error("invalid_client"), None, stale, now=NOW, leeway=10)
    assert not plan.serve_kept and not plan.remember
    cc = ClientCredentialsGrant(None)
    assert not failure_plan(_error("invalid_grant"), cc, None, now=NOW, leeway=10).drop_spent
    assert not failure_plan(_error("invalid_grant"), None, None, now=NOW, leeway=10).drop_spent
