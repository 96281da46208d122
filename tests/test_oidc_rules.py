"""Unit tests of the OpenID Connect rules in ``_oidc`` (no I/O)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from joserfc import jws

from oauth2_token_manager import IDTokenError, UserinfoError
from oauth2_token_manager._jose import secret_key, verify
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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "header",
    [b'{"alg": "HS256", "alg": "RS256"}', b'{"alg": "RS256", "x": NaN}', b'\xff{"alg": 1}'],
)
def test_jwt_header_must_be_strict_json(header: bytes) -> None:
    """A JWT header with a member twice (which alg?), NaN or bytes that are not UTF-8 is
    refused by the strict reader, saying why."""
    with pytest.raises(IDTokenError, match=r"the JWT header is (ambiguous JSON|not JSON)"):
        unverified_header(f"{_b64(header)}.e30.sig")


SECRET = "a-very-long-client-secret-for-hmac-256-use"


def test_jws_payload_with_duplicate_claims_is_refused() -> None:
    """A correctly signed JWS whose payload names ``sub`` twice is refused: the claims are
    ambiguous whatever the signature says; the message quotes no claim."""
    keys = secret_key(SECRET)
    payload = b'{"iss": "https://as", "sub": "alice", "sub": "mallory"}'
    value = jws.serialize_compact({"alg": "HS256"}, payload, keys.keys[0])
    with pytest.raises(IDTokenError, match="the JWS payload is ambiguous JSON") as info:
        verify(value, keys, ["HS256"])
    assert "mallory" not in str(info.value) and "alice" not in str(info.value)
    good = jws.serialize_compact({"alg": "HS256"}, b'{"sub": "alice"}', keys.keys[0])
    assert verify(good, keys, ["HS256"]) == {"sub": "alice"}


@pytest.mark.parametrize(
    ("payload", "match"),
    [(b'{"exp": Infinity}', "ambiguous JSON"), (b"[1]", r"not an object \(array\)"),
     (b"\xff", "not UTF-8")],
)  # fmt: skip
def test_jws_payload_must_be_a_strict_json_object(payload: bytes, match: str) -> None:
    """Infinity, a non-object and non-UTF-8 payloads are typed errors of the caller's class."""
    keys = secret_key(SECRET)
    value = jws.serialize_compact({"alg": "HS256"}, payload, keys.keys[0])
    with pytest.raises(UserinfoError, match=match):
        verify(value, keys, ["HS256"], UserinfoError)


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
