"""Unit tests of the sans-I/O protocol core: request building and response parsing (no I/O)."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import pytest

from oauth2_token_manager import (
    ClientConfig,
    HTTPStatusError,
    InvalidClient,
    InvalidGrant,
    InvalidResponseError,
    InvalidScope,
    OAuth2Error,
)
from oauth2_token_manager._http_types import RawResponse
from oauth2_token_manager._protocol import (
    IntrospectionResult,
    build_form_request,
    check_revocation_response,
    client_credentials_form,
    introspection_form,
    parse_introspection_response,
    parse_token_response,
    refresh_form,
    revocation_form,
)

URL = "https://as.example/token"


def raw(body: Any, status: int = 200, ctype: str = "application/json") -> RawResponse:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawResponse(status, {"Content-Type": ctype}, content, URL)


def test_client_credentials_form_sorts_scopes_and_adds_resource() -> None:
    """The client-credentials form carries the canonical scope and the RFC 8707 resource."""
    form = client_credentials_form(frozenset({"b", "a"}), "https://api")
    assert form == {"grant_type": "client_credentials", "scope": "a b", "resource": "https://api"}


def test_client_credentials_form_omits_absent_scope() -> None:
    """No scope parameter is sent when no scope was requested."""
    assert client_credentials_form(None) == {"grant_type": "client_credentials"}


def test_refresh_form_narrows_with_scope() -> None:
    """A refresh with requested scopes sends scope= to narrow the grant (RFC 6749 §6)."""
    form = refresh_form("rt", frozenset({"x"}))
    assert form == {"grant_type": "refresh_token", "refresh_token": "rt", "scope": "x"}
    assert "scope" not in refresh_form("rt", None)


def test_introspection_and_revocation_forms_carry_hint() -> None:
    """Introspection and revocation send the token and its type hint."""
    assert introspection_form("t", "access_token") == {
        "token": "t",
        "token_type_hint": "access_token",
    }
    assert revocation_form("t", None) == {"token": "t"}


def test_basic_auth_form_encodes_id_and_secret_first() -> None:
    """client_secret_basic form-encodes id and secret before base64 (RFC 6749 §2.3.1)."""
    client = ClientConfig("my id", "s3cr3t:with/special+chars&=%")
    request = build_form_request(
        client, URL, {"grant_type": "client_credentials"}, token_endpoint=URL, issuer="i", now=0
    )
    encoded = request.headers["authorization"].removeprefix("Basic ")
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    assert user == "my+id"
    assert ":" not in password and unquote_plus(password) == "s3cr3t:with/special+chars&=%"
    assert parse_qs(request.content.decode()) == {"grant_type": ["client_credentials"]}


def test_post_auth_puts_credentials_in_body() -> None:
    """client_secret_post sends client_id and client_secret in the form body."""
    client = ClientConfig("cid", "sec", auth_method="client_secret_post")
    request = build_form_request(client, URL, {"a": "b"}, token_endpoint=URL, issuer="i", now=0)
    body = parse_qs(request.content.decode())
    assert body == {"a": ["b"], "client_id": ["cid"], "client_secret": ["sec"]}
    assert "authorization" not in request.headers


def test_none_auth_sends_only_client_id() -> None:
    """A public client (none) identifies itself by client_id only."""
    client = ClientConfig("cid", auth_method="none")
    request = build_form_request(client, URL, {}, token_endpoint=URL, issuer="i", now=0)
    assert parse_qs(request.content.decode()) == {"client_id": ["cid"]}


def test_token_response_normalises_bearer_and_numeric_string_expiry() -> None:
    """Lowercase bearer becomes Bearer and expires_in "3600" is a number."""
    parsed = parse_token_response(
        raw({"access_token": "A", "token_type": "bearer", "expires_in": "3600"}),
        frozenset({"x"}),
    )
    assert parsed.token_type == "Bearer"
    assert parsed.expires_in == 3600.0
    assert parsed.scopes == frozenset({"x"})  # absent scope = the requested scope


def test_token_response_keeps_granted_scope_and_extra_fields() -> None:
    """The server's scope wins over the request, and unknown fields are kept as extra."""
    parsed = parse_token_response(
        raw(
            {
                "access_token": "A",
                "token_type": "Bearer",
                "scope": "a  b",
                "refresh_token": "R",
                "id_token": "I",
                "issued_token_type": "urn:x",
            }
        ),
        frozenset({"a", "b", "c"}),
    )
    assert parsed.scopes == frozenset({"a", "b"})
    assert parsed.refresh_token == "R" and parsed.id_token == "I"
    assert parsed.extra == {"issued_token_type": "urn:x"}
    assert "A" not in repr(parsed) and "R" not in repr(parsed).replace("TokenResponse", "")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"token_type": "Bearer"}, "has no access_token"),
        ({"access_token": 5, "token_type": "Bearer"}, "ill-typed access_token"),
        ({"access_token": "A"}, "has no token_type"),
        ({"access_token": "A", "token_type": "mac"}, "unsupported token_type"),
        ({"access_token": "A", "token_type": "Bearer", "expires_in": -1}, "out-of-range"),
        ({"access_token": "A", "token_type": "Bearer", "expires_in": 0}, "out-of-range"),
        ({"access_token": "A", "token_type": "Bearer", "expires_in": 1e12}, "out-of-range"),
        ({"access_token": "A", "token_type": "Bearer", "expires_in": "soon"}, "invalid expires_in"),
        ({"access_token": "A", "token_type": "Bearer", "expires_in": True}, "invalid expires_in"),
        ({"access_token": "A", "token_type": "Bearer", "scope": 3}, "invalid scope"),
        ({"access_token": "A", "token_type": "Bearer", "scope": 'a"b'}, "invalid scope"),
        ({"access_token": "A", "token_type": "Bearer", "refresh_token": 1}, "ill-typed"),
    ],
)
def test_token_response_rejects_malformed_fields(body: dict[str, Any], problem: str) -> None:
    """Each malformed field gives InvalidResponseError naming the problem and the status."""
    with pytest.raises(InvalidResponseError, match=problem) as info:
        parse_token_response(raw(body), None)
    assert info.value.status_code == 200


@pytest.mark.parametrize("spelled", ["Infinity", "-inf", "nan", "1e400"])
def test_numeric_strings_must_be_finite(spelled: str) -> None:
    """The JSON reader refuses NaN and 1e400 as numbers; spelled as strings they are still
    refused, by the field check (expires_in, and introspection's exp)."""
    body = {"access_token": "A", "token_type": "Bearer", "expires_in": spelled}
    with pytest.raises(InvalidResponseError, match="must be finite"):
        parse_token_response(raw(body), None)
    with pytest.raises(InvalidResponseError, match="must be finite"):
        parse_introspection_response(raw({"active": True, "exp": spelled}))


@pytest.mark.parametrize(
    "content",
    [
        b"<html>oops</html>",
        b"[1, 2]",
        b'{"access_token": "A", "access_token": "B", "token_type": "Bearer"}',
        b'{"access_token": "A", "token_type": "Bearer", "expires_in": NaN}',
        b"\xff\xfe",
        b"",
    ],
)
def test_token_response_rejects_non_json_bodies(content: bytes) -> None:
    """HTML, arrays, duplicate keys, NaN and undecodable bytes are typed errors."""
    with pytest.raises(InvalidResponseError):
        parse_token_response(raw(content, ctype="text/html"), None)


def test_error_response_maps_to_typed_error_with_servers_words() -> None:
    """An RFC 6749 §5.2 body becomes the matching subclass with description, URI and status."""
    body = {"error": "invalid_grant", "error_description": "grant expired", "error_uri": "u"}
    with pytest.raises(InvalidGrant) as info:
        parse_token_response(raw(body, 400), None)
    err = info.value
    assert (err.error, err.error_description, err.error_uri, err.status_code) == (
        "invalid_grant",
        "grant expired",
        "u",
        400,
    )
    assert "grant expired" in str(err) and "400" in str(err)


@pytest.mark.parametrize(
    ("code", "cls"),
    [("invalid_client", InvalidClient), ("invalid_scope", InvalidScope), ("weird", OAuth2Error)],
)
def test_error_codes_map_to_classes(code: str, cls: type[OAuth2Error]) -> None:
    """Known error codes get their class; unknown ones the base OAuth2Error."""
    with pytest.raises(cls):
        parse_token_response(raw({"error": code}, 401), None)


def test_error_in_a_200_body_is_still_an_error() -> None:
    """A 200 carrying an error object and no token is raised as that error."""
    with pytest.raises(InvalidClient):
        parse_token_response(raw({"error": "invalid_client"}, 200), None)


def test_empty_error_body_keeps_status() -> None:
    """A 401 with an empty body is an HTTPStatusError carrying the status, not a parse error."""
    with pytest.raises(HTTPStatusError) as info:
        parse_token_response(raw(b"", 401, ctype=""), None)
    assert info.value.status_code == 401
    assert "401" in str(info.value)


def test_error_body_text_is_never_quoted() -> None:
    """A non-JSON error body is described by type and length, never echoed."""
    with pytest.raises(HTTPStatusError) as info:
        parse_token_response(raw(b"secret-token-echo", 500, ctype="text/plain"), None)
    assert "secret-token-echo" not in str(info.value)


@pytest.mark.parametrize(
    "content",
    [
        b'{"error": "invalid_grant", "error": "temporarily_unavailable"}',
        b'{"error": "invalid_grant", "error_description": "secret-token-echo", "n": NaN}',
        b'{"error": "invalid_grant", "nested": {"n": 1e400}}',
    ],
)
def test_error_body_that_is_not_strict_json_is_not_trusted(content: bytes) -> None:
    """An error body with duplicate ``error`` keys, NaN or an overflowing number is not an
    OAuth 2.0 error (which code would it be?): HTTPStatusError, saying why, quoting nothing."""
    with pytest.raises(HTTPStatusError) as info:
        parse_token_response(raw(content, 400), None)
    assert not isinstance(info.value, OAuth2Error)
    assert info.value.status_code == 400
    message = str(info.value)
    assert "ambiguous JSON" in message and "not trusted as an OAuth 2.0 error" in message
    assert "invalid_grant" not in message and "secret-token-echo" not in message


def test_token_response_messages_say_which_rule_was_broken() -> None:
    """A refused 200 body names the broken rule and describes the body, never quoting it."""
    content = b'{"access_token": "SECRET-A", "access_token": "SECRET-B", "token_type": "Bearer"}'
    with pytest.raises(InvalidResponseError) as info:
        parse_token_response(raw(content), None)
    message = str(info.value)
    assert "token response from https://as.example/token is ambiguous JSON" in message
    assert f"HTTP 200, application/json, {len(content)} bytes" in message
    assert "SECRET" not in message


def test_introspection_parses_fields_and_tolerates_strings() -> None:
    """Introspection accepts "true", numeric-string exp, a string aud, and keeps raw fields."""
    result = parse_introspection_response(
        raw(
            {
                "active": "true",
                "scope": "a b",
                "exp": "100",
                "aud": "api",
                "sub": "alice",
                "x": 1,
            }
        )
    )
    assert result.active is True
    assert result.scopes == frozenset({"a", "b"})
    assert result.exp == 100.0
    assert result.aud == ("api",)
    assert result.raw["x"] == 1


@pytest.mark.parametrize(
    "body",
    [{"scope": "a"}, {"active": "maybe"}, {"active": True, "exp": "x"}, {"active": True, "aud": 1}],
)
def test_introspection_rejects_invalid_objects(body: dict[str, Any]) -> None:
    """Missing or ill-typed active/exp/aud give InvalidResponseError."""
    with pytest.raises(InvalidResponseError):
        parse_introspection_response(raw(body))


def test_introspection_non_object_is_rejected() -> None:
    """An introspection body that is not an object is a typed error."""
    with pytest.raises(InvalidResponseError, match="not an object"):
        parse_introspection_response(raw([True]))


def test_introspection_error_status_is_raised() -> None:
    """An introspection failure carries the server's error."""
    with pytest.raises(InvalidClient):
        parse_introspection_response(raw({"error": "invalid_client"}, 401))


def test_introspection_result_round_trips() -> None:
    """A stored raw introspection result parses back to the same result."""
    result = IntrospectionResult.from_mapping({"active": False})
    assert IntrospectionResult.from_mapping(result.raw) == result


def test_revocation_accepts_any_2xx_and_raises_errors() -> None:
    """Revocation succeeds on 200 and 204; a 503 or an error body is raised."""
    check_revocation_response(raw(b"", 200))
    check_revocation_response(raw(b"", 204))
    with pytest.raises(HTTPStatusError):
        check_revocation_response(raw(b"", 503))
    with pytest.raises(OAuth2Error, match="unsupported_token_type"):
        check_revocation_response(raw({"error": "unsupported_token_type"}, 400))
