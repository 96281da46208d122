"""Unit tests of the OpenID Connect rules in ``_oidc`` (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from oauth2_token_manager import IDTokenError, UserinfoError
from oauth2_token_manager._oidc import (
    check_id_token_claims,
    check_refreshed_id_token,
    is_jwe,
    merge_claims,
    unverified_header,
    userinfo_format,
)

NOW = 1_000_000.0
GOOD: dict[str, Any] = {
    "iss": "https://as",
    "sub": "alice",
    "aud": "client",
    "exp": NOW + 300,
    "iat": NOW - 5,
    "nonce": "n-1",
    "email": "a@x",
}


def check(claims: dict[str, Any], **kw: Any) -> None:
    kw.setdefault("nonce", None)
    check_id_token_claims(claims, issuer="https://as", client_id="client", now=NOW, leeway=60, **kw)


def test_valid_claims_pass() -> None:
    """A token meeting every rule is accepted, with and without a nonce check."""
    check(GOOD)
    check(GOOD, nonce="n-1")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"iss": "https://evil"}, "iss"),
        ({"aud": "other"}, "aud does not contain"),
        ({"aud": ["client", "other"]}, "several audiences and no azp"),
        ({"aud": ["client", "other"], "azp": "other"}, "azp"),
        ({"azp": "other"}, "azp"),
        ({"aud": 5}, "aud is missing"),
        ({"exp": NOW - 61}, "expired"),
        ({"exp": "soon"}, "exp is missing"),
        ({"iat": NOW + 61}, "future"),
        ({"iat": True}, "iat is missing"),
        ({"sub": ""}, "sub"),
    ],
)
def test_each_rule_is_enforced(change: dict[str, Any], problem: str) -> None:
    """Each broken rule gives IDTokenError naming it."""
    with pytest.raises(IDTokenError, match=problem):
        check({**GOOD, **change})


def test_leeway_tolerates_small_clock_skew() -> None:
    """exp 30 s ago and iat 30 s ahead pass with a 60 s leeway."""
    check({**GOOD, "exp": NOW - 30, "iat": NOW + 30})


def test_wrong_nonce_is_rejected() -> None:
    """A nonce other than the one sent is refused."""
    with pytest.raises(IDTokenError, match="nonce"):
        check(GOOD, nonce="n-2")


def test_refreshed_id_token_keeps_iss_sub_aud() -> None:
    """Core §12.2: another sub, iss or aud after a refresh is an error; same ones pass."""
    check_refreshed_id_token(GOOD, {**GOOD, "iat": NOW, "aud": ["client"]})
    for change in ({"sub": "bob"}, {"iss": "https://x"}, {"aud": ["client", "x"]}):
        with pytest.raises(IDTokenError, match="refreshed"):
            check_refreshed_id_token(GOOD, {**GOOD, **change})


def test_jwt_shapes_and_headers() -> None:
    """Three parts is a JWS, five a JWE, others are refused; headers must be JSON objects."""
    assert not is_jwe("a.b.c")
    assert is_jwe("a.b.c.d.e")
    with pytest.raises(IDTokenError):
        is_jwe("a.b")
    assert unverified_header("eyJhbGciOiJSUzI1NiJ9.x.y") == {"alg": "RS256"}
    for bad in ("!!!.x.y", "WzFd.x.y"):
        with pytest.raises(IDTokenError):
            unverified_header(bad)


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("application/json", "json"),
        ("application/json; charset=utf-8", "json"),
        ("application/jwt; charset=UTF-8", "jwt"),
        ("APPLICATION/JWT", "jwt"),
    ],
)
def test_userinfo_content_types(content_type: str, kind: str) -> None:
    """JSON and JWT userinfo are recognised with parameters and in any case."""
    assert userinfo_format(content_type) == kind


def test_unexpected_userinfo_content_type() -> None:
    """HTML or no content type is a UserinfoError."""
    for content_type in ("text/html", None):
        with pytest.raises(UserinfoError):
            userinfo_format(content_type)


def test_merge_drops_protocol_claims_and_newer_wins() -> None:
    """Protocol claims are dropped; on conflicts the newer source wins; sub stays."""
    userinfo = {"sub": "alice", "email": "new@x", "name": "Alice"}
    newer_userinfo = merge_claims(GOOD, NOW, userinfo, NOW + 10)
    assert newer_userinfo == {"sub": "alice", "email": "new@x", "name": "Alice"}
    newer_id = merge_claims(GOOD, NOW + 20, userinfo, NOW + 10)
    assert newer_id["email"] == "a@x" and newer_id["name"] == "Alice"
    assert not {"iss", "aud", "exp", "iat", "nonce"} & set(newer_id)
    assert merge_claims(None, 0, None, 0) == {}
