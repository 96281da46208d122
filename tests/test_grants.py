"""Unit tests of the grant values (``_grants``) and of how records are made from answers and
registrations (``_records``): pure functions; one test runs a new grant through the sync
manager over ``MockTransport`` to show that the executor needs no change for it."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import httpx
import pytest

from oauth2_token_manager import (
    AccessToken,
    AccessTokenManager,
    ClientConfig,
    IntrospectionResult,
    Issuer,
    RefreshToken,
    TokenResponse,
    TokenRevokedError,
)
from oauth2_token_manager._decide import Decision, Obtain, TokenRequest
from oauth2_token_manager._events import EventKind
from oauth2_token_manager._grants import ClientCredentialsGrant, Refresh
from oauth2_token_manager._records import (
    access_expiry,
    belongs_to_grant,
    grant_of,
    issued_access_token,
    registered_token,
)
from oauth2_token_manager._sync import _manager as sync_manager

NOW = 1_000_000.0


def response(**fields: Any) -> TokenResponse:
    """A parsed token response with defaults."""
    values: dict[str, Any] = {
        "access_token": "new-access",
        "token_type": "Bearer",
        "expires_in": 300.0,
        "scopes": frozenset({"a"}),
        "refresh_token": None,
        "id_token": None,
        "extra": {},
    }
    values.update(fields)
    return TokenResponse(**values)


def refresh_token(value: str = "rt-1", **fields: Any) -> RefreshToken:
    """A stored refresh token of alice."""
    return RefreshToken(value, "https://as", "c", subject="alice", scopes={"a", "b"}, **fields)


def test_refresh_rotation_replaces_the_spent_token_and_keeps_the_grant() -> None:
    """A new refresh_token in the answer replaces the spent one: same subject and scopes, new
    value and times, no stale introspection, and the first token's grant id."""
    spent = refresh_token(updated_at=5, introspection={"active": True}, introspected_at=5)
    grant = Refresh(spent, None)
    rotation = grant.replaces(response(refresh_token="rt-2"), NOW)
    assert rotation is not None
    old, new = rotation
    assert old is spent
    assert (new.value, new.subject, new.scopes) == ("rt-2", "alice", spent.scopes)
    assert (new.issued_at, new.updated_at, new.introspection) == (NOW, NOW, None)
    assert new.grant_id == spent.token_hash == grant.grant_id
    again = Refresh(new, None).replaces(response(refresh_token="rt-3"), NOW + 1)
    assert again is not None and again[1].grant_id == spent.token_hash  # kept across rotations


@pytest.mark.parametrize("value", [None, "rt-1"])
def test_refresh_without_a_new_token_replaces_nothing(value: str | None) -> None:
    """An answer without refresh_token (or with the same one) keeps the stored token."""
    assert Refresh(refresh_token(), None).replaces(response(refresh_token=value), NOW) is None


def test_client_credentials_replace_nothing_and_belong_to_no_grant() -> None:
    """Client-credentials tokens stand alone: nothing replaced, no grant id, no spent token."""
    grant = ClientCredentialsGrant(frozenset({"a"}), "https://api")
    assert grant.replaces(response(refresh_token="x"), NOW) is None
    assert grant.grant_id is None and grant.spends is None and grant.lock is None
    assert grant.form()["resource"] == "https://api"


def test_issued_token_is_cached_under_the_asked_scopes_only_when_they_differ() -> None:
    """requested_scopes is kept only when the server granted other scopes than were asked."""
    common: dict[str, Any] = {
        "issuer": "https://as",
        "client_id": "c",
        "subject": None,
        "resource": None,
        "now": NOW,
        "expires_at": NOW + 300,
        "introspection": None,
        "grant_id": None,
    }
    same = issued_access_token(response(), requested=frozenset({"a"}), **common)
    other = issued_access_token(response(), requested=frozenset({"a", "z"}), **common)
    assert same.requested_scopes is None and same.scope_key == "a"
    assert other.requested_scopes == frozenset({"a", "z"}) and other.scope_key == "a z"
    assert isinstance(same, AccessToken) and same.issued_at == NOW


def test_access_expiry_prefers_expires_in_then_introspection_then_the_default() -> None:
    """expires_in wins; without it an active introspection's exp; else the default lifetime."""
    live = IntrospectionResult(active=True, exp=NOW + 42)
    assert access_expiry(response(expires_in=10.0), NOW, live, 300) == NOW + 10
    assert access_expiry(response(expires_in=None), NOW, live, 300) == NOW + 42
    dead = IntrospectionResult(active=False, exp=NOW + 42)
    assert access_expiry(response(expires_in=None), NOW, dead, 300) == NOW + 300
    assert access_expiry(response(expires_in=None), NOW, None, 300) == NOW + 300


def test_registration_merge_keeps_the_callers_values() -> None:
    """Introspection fills what the caller left out; the caller's values always win."""
    seen = IntrospectionResult(
        active=True,
        scopes=frozenset({"x"}),
        exp=NOW + 99,
        iat=NOW - 1,
        sub="alice",
        aud=("api",),
        raw={"active": True, "sub": "alice"},
    )
    common: dict[str, Any] = {
        "issuer": "https://as",
        "client_id": "c",
        "token_type": "Bearer",
        "resource": None,
        "extra": None,
        "introspection": seen,
        "now": NOW,
    }
    filled = registered_token(
        RefreshToken, "v", subject=None, scopes=None, expires_at=None, **common
    )
    assert (filled.subject, filled.scopes, filled.expires_at) == ("alice", {"x"}, NOW + 99)
    assert (filled.issued_at, filled.audience, filled.introspected_at) == (NOW - 1, ("api",), NOW)
    given = registered_token(
        RefreshToken, "v", subject="bob", scopes=frozenset({"y"}), expires_at=NOW + 5, **common
    )
    assert (given.subject, given.scopes, given.expires_at) == ("bob", {"y"}, NOW + 5)


def test_registration_ignores_the_client_as_subject_and_refuses_inactive_tokens() -> None:
    """sub equal to the client id means client credentials (no subject); an inactive token is
    refused with TokenRevokedError, naming it by hash only."""
    common: dict[str, Any] = {
        "issuer": "https://as",
        "client_id": "c",
        "subject": None,
        "scopes": None,
        "expires_at": None,
        "token_type": "Bearer",
        "resource": None,
        "extra": None,
        "now": NOW,
    }
    own = IntrospectionResult(active=True, sub="c")
    assert registered_token(AccessToken, "v", introspection=own, **common).subject is None
    with pytest.raises(TokenRevokedError, match="not active") as info:
        registered_token(
            AccessToken,
            "secret-value",
            introspection=IntrospectionResult(active=False),
            **common,
        )
    assert "secret-value" not in str(info.value)
    bare = registered_token(AccessToken, "v", introspection=None, **common)
    assert (bare.issued_at, bare.introspection, bare.audience) == (NOW, None, ())


def test_grant_membership_follows_the_first_refresh_token() -> None:
    """A refresh token's grant is its own hash until it rotates; its access tokens carry it."""
    first = refresh_token()
    child = AccessToken("a", "https://as", "c", grant_id=grant_of(first))
    stranger = AccessToken("b", "https://as", "c", grant_id="other")
    assert belongs_to_grant(child, first) and not belongs_to_grant(stranger, first)


@dataclasses.dataclass(frozen=True)
class AssertionGrant:
    """A grant the managers have never seen (shaped like RFC 7523's JWT bearer): the whole
    of what adding a grant takes, besides a rule in ``decide`` that chooses it."""

    assertion: str
    scopes: frozenset[str] | None

    replay_safe: ClassVar[bool] = True
    event: ClassVar[EventKind] = "obtained"
    keeps_id_token: ClassVar[bool] = False
    spends: ClassVar[None] = None
    lock: ClassVar[None] = None
    grant_id: ClassVar[None] = None

    @property
    def expected_scopes(self) -> frozenset[str] | None:
        return self.scopes

    def form(self) -> dict[str, str]:
        return {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": self.assertion,
        }

    def replaces(self, response: TokenResponse, now: float) -> None:
        return None


def test_a_new_grant_runs_through_the_unchanged_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The manager executes whatever grant the decision names: a new grant value (and a rule
    choosing it) is all it takes; its token is cached and single-flighted like any other."""
    forms: list[dict[str, str]] = []

    def server(request: httpx.Request) -> httpx.Response:
        forms.append(dict(httpx.QueryParams(request.content.decode())))
        body = {"access_token": "from-assertion", "token_type": "Bearer", "expires_in": 600}
        return httpx.Response(200, json=body)

    real_decide = sync_manager.decide

    def decide_with_assertion(request: TokenRequest, *args: Any, **kwargs: Any) -> Decision:
        decision = real_decide(request, *args, **kwargs)
        if isinstance(decision, Obtain):
            grant = AssertionGrant("signed.jwt.assertion", request.scopes)
            return Obtain(grant, decision.locks, decision.keep)
        return decision

    monkeypatch.setattr(sync_manager, "decide", decide_with_assertion)
    issuer = Issuer(
        "https://as.example",
        ClientConfig("c", "s"),
        http=httpx.Client(transport=httpx.MockTransport(server)),
        discovery=False,
        metadata={"token_endpoint": "https://as.example/token"},
    )
    manager = AccessTokenManager(issuer)
    first = manager.get(scopes=["api"])
    again = manager.get(scopes=["api"])
    assert first.value == again.value == "from-assertion"
    assert first.scopes == frozenset({"api"}) and first.grant_id is None
    assert len(forms) == 1
    assert forms[0]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert forms[0]["assertion"] == "signed.jwt.assertion"
