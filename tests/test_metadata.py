"""Unit tests of the pure metadata rules: URLs, validation, overrides and the cache policy."""

from __future__ import annotations

import json
from typing import Any

import pytest

from oauth2_token_manager._exceptions import (
    ConfigurationError,
    HTTPStatusError,
    InsecureEndpointError,
    InvalidResponseError,
    IssuerMismatchError,
    MetadataError,
    MissingEndpointError,
    TransportError,
)
from oauth2_token_manager._metadata import (
    MetadataCacheState,
    NotJSONObjectError,
    ServerMetadata,
    check_issuer,
    check_url,
    document_absent,
    metadata_from_overrides,
    parse_metadata,
    well_known_urls,
)

ISSUER = "https://as.example"
URL = f"{ISSUER}/.well-known/openid-configuration"


def document(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "issuer": ISSUER,
        "token_endpoint": f"{ISSUER}/token",
        "introspection_endpoint": f"{ISSUER}/introspect",
        "revocation_endpoint": f"{ISSUER}/revoke",
        "jwks_uri": f"{ISSUER}/jwks",
        "scopes_supported": ["openid", "api:read"],
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def parse(
    body: bytes | dict[str, Any],
    *,
    content_type: str | None = "application/json",
    status: int = 200,
    issuer: str = ISSUER,
    overrides: dict[str, str] | None = None,
    allow_insecure_loopback: bool = False,
) -> ServerMetadata:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return parse_metadata(
        raw,
        content_type,
        status,
        issuer,
        URL,
        overrides=overrides or {},
        allow_insecure_loopback=allow_insecure_loopback,
    )


# --- well-known URLs ------------------------------------------------------------------------


def test_urls_without_path_try_openid_then_rfc8414() -> None:
    """An issuer without a path gives the two root well-known URLs, OpenID's first."""
    assert well_known_urls("https://as.example") == [
        "https://as.example/.well-known/openid-configuration",
        "https://as.example/.well-known/oauth-authorization-server",
    ]


def test_urls_without_path_ignore_trailing_slash() -> None:
    """A lone trailing slash is removed before the well-known suffix is added."""
    assert well_known_urls("https://as.example/") == well_known_urls("https://as.example")


def test_urls_with_path_use_all_three_forms_in_order() -> None:
    """A path issuer gives OpenID appended, RFC 8414 inserted, then OpenID inserted."""
    assert well_known_urls("https://as.example/tenant") == [
        "https://as.example/tenant/.well-known/openid-configuration",
        "https://as.example/.well-known/oauth-authorization-server/tenant",
        "https://as.example/.well-known/openid-configuration/tenant",
    ]


def test_urls_with_path_ignore_trailing_slash() -> None:
    """The terminating slash of a path issuer is removed first (RFC 8414 §3.1)."""
    assert well_known_urls("https://as.example/tenant/") == well_known_urls(
        "https://as.example/tenant"
    )


def test_urls_keep_port_and_nested_path() -> None:
    """Port and a multi-segment path are kept in every form."""
    assert well_known_urls("https://as.example:8443/realms/a") == [
        "https://as.example:8443/realms/a/.well-known/openid-configuration",
        "https://as.example:8443/.well-known/oauth-authorization-server/realms/a",
        "https://as.example:8443/.well-known/openid-configuration/realms/a",
    ]


@pytest.mark.parametrize(
    "issuer", ["https://as.example/?x=1", "https://as.example/#f", "as.example", "/tenant"]
)
def test_urls_reject_unusable_issuers(issuer: str) -> None:
    """Issuers with a query, a fragment or no scheme/host are configuration errors."""
    with pytest.raises(ConfigurationError):
        well_known_urls(issuer)


def test_issuer_with_credentials_is_rejected() -> None:
    """User info in the issuer is refused and not echoed in the message."""
    with pytest.raises(ConfigurationError) as info:
        check_issuer("https://user:hunter2@as.example", allow_insecure_loopback=False)
    assert "hunter2" not in str(info.value)


# --- insecure URLs --------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://as.example/token", "HTTPS://as.example/t?x=1"])
def test_https_is_accepted(url: str) -> None:
    """HTTPS URLs pass, whatever the scheme's case."""
    check_url(url, allow_insecure_loopback=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/token",
        "http://127.9.8.7/token",
        "http://[::1]:9000/token",
        "http://localhost/token",
    ],
)
def test_http_loopback_needs_permission(url: str) -> None:
    """Plain http to a loopback host passes only when allowed."""
    check_url(url, allow_insecure_loopback=True)
    with pytest.raises(InsecureEndpointError, match="allow_insecure_loopback"):
        check_url(url, allow_insecure_loopback=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://as.example/token",
        "http://127.0.0.1.nip.io/token",
        "http://10.0.0.1/token",
        "http://[::ffff:127.0.0.1]/token",
        "ftp://127.0.0.1/token",
        "/token",
        "https:///token",
    ],
)
def test_other_urls_are_insecure(url: str) -> None:
    """Non-loopback http, other schemes and relative URLs fail even when loopback is allowed."""
    with pytest.raises(InsecureEndpointError):
        check_url(url, allow_insecure_loopback=True)


def test_insecure_message_hides_query() -> None:
    """The error names the URL without its query string."""
    with pytest.raises(InsecureEndpointError) as info:
        check_url("http://as.example/token?secret=s3cr3t", allow_insecure_loopback=False)
    assert "http://as.example/token" in str(info.value)
    assert "s3cr3t" not in str(info.value)


# --- parsing --------------------------------------------------------------------------------


def test_valid_document_gives_typed_properties() -> None:
    """A good document is exposed as a mapping and as typed properties."""
    metadata = parse(document())
    assert metadata.issuer == ISSUER
    assert metadata.token_endpoint == f"{ISSUER}/token"
    assert metadata.introspection_endpoint == f"{ISSUER}/introspect"
    assert metadata.revocation_endpoint == f"{ISSUER}/revoke"
    assert metadata.jwks_uri == f"{ISSUER}/jwks"
    assert metadata.userinfo_endpoint is None
    assert metadata.scopes_supported == ("openid", "api:read")
    assert metadata.token_endpoint_auth_methods_supported == ("client_secret_basic",)
    assert metadata["token_endpoint"] == f"{ISSUER}/token"
    assert metadata.source == URL


def test_metadata_is_immutable() -> None:
    """Neither the mapping, its nested lists, nor its attributes can be changed."""
    metadata = parse(document(extra={"a": [1, 2]}))
    with pytest.raises(TypeError):
        metadata["issuer"] = "https://evil.example"  # type: ignore[index]
    with pytest.raises(AttributeError):
        metadata._data = {}
    with pytest.raises(TypeError):
        metadata["extra"]["a"] = 1
    assert metadata["extra"]["a"] == (1, 2)


def test_missing_endpoint_error_names_field_and_issuer() -> None:
    """``endpoint`` of an absent field raises MissingEndpointError naming both."""
    metadata = parse(document(revocation_endpoint=None))
    with pytest.raises(MissingEndpointError) as info:
        metadata.endpoint("revocation_endpoint")
    assert info.value.field == "revocation_endpoint"
    assert info.value.issuer == ISSUER
    assert "revocation_endpoint" in str(info.value)
    assert metadata.endpoint("token_endpoint") == f"{ISSUER}/token"


def test_issuer_mismatch_is_rejected() -> None:
    """A document naming another issuer raises IssuerMismatchError."""
    with pytest.raises(IssuerMismatchError, match="evil"):
        parse(document(issuer="https://evil.example"))


@pytest.mark.parametrize(
    "stated",
    ["https://AS.example", "https://as.example:443", "https://as.example/t", "http://as.example"],
)
def test_issuer_comparison_is_exact_apart_from_one_slash(stated: str) -> None:
    """Case, default port, path and scheme differences are all mismatches."""
    with pytest.raises(IssuerMismatchError):
        parse(document(issuer=stated))


@pytest.mark.parametrize(("configured", "stated"), [(ISSUER, ISSUER + "/"), (ISSUER + "/", ISSUER)])
def test_issuer_comparison_ignores_one_trailing_slash(configured: str, stated: str) -> None:
    """One trailing slash on either side is ignored; the server's spelling is kept."""
    metadata = parse(document(issuer=stated), issuer=configured)
    assert metadata.issuer == stated


def test_missing_issuer_is_invalid() -> None:
    """A JSON object without ``issuer`` is an invalid response, not a mismatch."""
    with pytest.raises(InvalidResponseError, match="no issuer"):
        parse(document(issuer=None))


def test_html_body_is_not_json() -> None:
    """An HTML page (a catch-all route) is NotJSONObjectError, described as HTML."""
    with pytest.raises(NotJSONObjectError, match="HTML") as info:
        parse(b"<!doctype html><html>login</html>", content_type="text/html")
    assert isinstance(info.value, InvalidResponseError)
    assert info.value.status_code == 200


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"null", b"42"])
def test_json_that_is_not_an_object_is_rejected(body: bytes) -> None:
    """JSON arrays, strings, null and numbers are not metadata documents."""
    with pytest.raises(NotJSONObjectError, match="not an object"):
        parse(body)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "text/plain", None],
)
def test_content_type_label_is_not_required(content_type: str | None) -> None:
    """A JSON object body is accepted whatever its Content-Type label."""
    assert parse(document(), content_type=content_type).issuer == ISSUER


@pytest.mark.parametrize(
    "body", [b'{"issuer": "https://as.example", "issuer": "https://evil.example"}', b'{"a": NaN}']
)
def test_ambiguous_json_is_invalid_not_absent(body: bytes) -> None:
    """Duplicate keys and NaN are invalid responses, but not 'no document here'."""
    with pytest.raises(InvalidResponseError, match="ambiguous") as info:
        parse(body)
    assert not isinstance(info.value, NotJSONObjectError)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"issuer": "https://as.example", "x": 1e400}', "ambiguous"),
        (b'{"issuer": "https://as.example", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
         "nested too deeply"),
        # Python's parser reads this; freezing it recursively raised RecursionError before.
        (b'{"issuer": "https://as.example", "x": ' + b"[" * 990 + b"]" * 990 + b"}",
         "nested too deeply"),
        (b'{"issuer": "https://as.example", "x": ' + b"9" * 5000 + b"}", "integer"),
    ],
)  # fmt: skip
def test_refused_json_is_invalid_not_absent(body: bytes, reason: str) -> None:
    """Overflowing numbers, deep nesting and over-long integers make a real document invalid:
    the search stops there instead of trying the next well-known URL."""
    with pytest.raises(InvalidResponseError, match=reason) as info:
        parse(body)
    assert not isinstance(info.value, NotJSONObjectError)


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"issuer": ISSUER}).encode("utf-16"),
        json.dumps({"issuer": ISSUER}).encode("utf-32"),
        json.dumps({"issuer": ISSUER, "x": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
    ],
)
def test_json_that_is_not_utf8_is_not_json(body: bytes) -> None:
    """UTF-16, UTF-32 and Latin-1 bodies are not JSON documents here (RFC 8259 §8.1)."""
    with pytest.raises(NotJSONObjectError, match="not UTF-8"):
        parse(body)


def test_utf8_byte_order_mark_is_tolerated() -> None:
    """A document saved with a UTF-8 byte order mark is read (RFC 8259 §8.1 allows it)."""
    assert parse(b"\xef\xbb\xbf" + json.dumps(document()).encode()).issuer == ISSUER


def test_non_2xx_is_http_status_error() -> None:
    """A non-2xx status raises HTTPStatusError carrying the status."""
    with pytest.raises(HTTPStatusError) as info:
        parse(b"not found", status=404, content_type="text/plain")
    assert info.value.status_code == 404


def test_insecure_endpoint_in_document_is_rejected() -> None:
    """Every endpoint URL of the document must be secure; the error names the field."""
    with pytest.raises(InsecureEndpointError, match="revocation_endpoint"):
        parse(document(revocation_endpoint="http://as.example/revoke"))


def test_insecure_mtls_alias_is_rejected() -> None:
    """The RFC 8705 endpoint aliases are checked too."""
    aliases = {"token_endpoint": "http://mtls.as.example/token"}
    with pytest.raises(InsecureEndpointError, match=r"mtls_endpoint_aliases\.token_endpoint"):
        parse(document(mtls_endpoint_aliases=aliases))


def test_loopback_document_accepted_when_allowed() -> None:
    """A local test server over http is accepted with allow_insecure_loopback."""
    issuer = "http://127.0.0.1:9999"
    body = document(issuer=issuer, token_endpoint=f"{issuer}/token")
    metadata = parse(
        {k: v for k, v in body.items() if not k.endswith(("_endpoint", "_uri"))}
        | {"token_endpoint": f"{issuer}/token"},
        issuer=issuer,
        allow_insecure_loopback=True,
    )
    assert metadata.token_endpoint == f"{issuer}/token"


def test_ill_typed_field_is_invalid() -> None:
    """A known field with the wrong type makes the document invalid."""
    with pytest.raises(InvalidResponseError, match="scopes_supported"):
        parse(document(scopes_supported="openid api:read"))
    with pytest.raises(InvalidResponseError, match="token_endpoint"):
        parse(document(token_endpoint=42))


def test_overrides_win_over_discovered_values() -> None:
    """An override replaces a discovered endpoint and adds a missing one."""
    metadata = parse(
        document(),
        overrides={
            "token_endpoint": "https://gateway.example/token",
            "userinfo_endpoint": "https://as.example/me",
        },
    )
    assert metadata.token_endpoint == "https://gateway.example/token"
    assert metadata.userinfo_endpoint == "https://as.example/me"


def test_override_replaces_an_unusable_discovered_value() -> None:
    """A discovered insecure endpoint is not checked when an override replaces it."""
    metadata = parse(
        document(revocation_endpoint="http://as.example/revoke"),
        overrides={"revocation_endpoint": "https://as.example/revoke"},
    )
    assert metadata.revocation_endpoint == "https://as.example/revoke"


@pytest.mark.parametrize(
    "overrides",
    [
        {"issuer": "https://other.example"},
        {"token_endpoint": "http://as.example/token"},
        {"scopes_supported": "openid"},
    ],
)
def test_bad_overrides_are_configuration_errors(overrides: dict[str, str]) -> None:
    """Overriding the issuer, an insecure override or a non-string field is refused."""
    with pytest.raises(ConfigurationError):
        parse(document(), overrides=overrides)


def test_metadata_from_overrides() -> None:
    """Without discovery the metadata is the issuer plus the configured fields."""
    metadata = metadata_from_overrides(ISSUER, {"token_endpoint": f"{ISSUER}/oauth/token"})
    assert metadata.issuer == ISSUER
    assert metadata.token_endpoint == f"{ISSUER}/oauth/token"
    assert metadata.source is None
    with pytest.raises(MissingEndpointError, match="introspection_endpoint"):
        metadata.endpoint("introspection_endpoint")
    with pytest.raises(InsecureEndpointError):
        metadata_from_overrides(ISSUER, {"token_endpoint": "http://as.example/token"})


@pytest.mark.parametrize(
    ("error", "absent"),
    [
        (NotJSONObjectError("html", status_code=200), True),
        (HTTPStatusError("x", status_code=404), True),
        (HTTPStatusError("x", status_code=400), True),
        (HTTPStatusError("x", status_code=405), True),
        (HTTPStatusError("x", status_code=403), True),
        (HTTPStatusError("x", status_code=302), True),
        (HTTPStatusError("x", status_code=429), False),
        (HTTPStatusError("x", status_code=408), False),
        (HTTPStatusError("x", status_code=500), False),
        (HTTPStatusError("x", status_code=503), False),
        (InvalidResponseError("ambiguous", status_code=200), False),
        (IssuerMismatchError("x"), False),
        (TransportError("https://as.example", "ConnectError"), False),
    ],
)
def test_document_absent_decides_whether_to_try_the_next_url(
    error: Exception, absent: bool
) -> None:
    """Only 'nothing here' answers move discovery on to the next well-known URL."""
    assert document_absent(error) is absent


# --- cache policy ---------------------------------------------------------------------------

DOC = metadata_from_overrides(ISSUER, {"token_endpoint": f"{ISSUER}/token"})
DOC2 = metadata_from_overrides(ISSUER, {"token_endpoint": f"{ISSUER}/token2"})


def test_empty_state_needs_fetch_and_has_nothing() -> None:
    """A new state must fetch; asking it for a document is a MetadataError."""
    state = MetadataCacheState()
    assert state.needs_fetch(0.0)
    with pytest.raises(MetadataError):
        state.current()


def test_success_is_fresh_for_max_age() -> None:
    """After a success the document is used for exactly max_age seconds."""
    state = MetadataCacheState().on_success(DOC, 1000.0)
    assert state.current() is DOC
    assert not state.needs_fetch(1000.0)
    assert not state.needs_fetch(1000.0 + 3599.9)
    assert state.needs_fetch(1000.0 + 3600.0)


def test_failed_refresh_keeps_document_and_backs_off() -> None:
    """A failed refresh keeps the old document and waits 10 s before the next try."""
    error = TransportError("https://as.example", "ConnectError")
    state = MetadataCacheState().on_success(DOC, 0.0).on_failure(error, 3600.0)
    assert state.current() is DOC
    assert state.last_error is error
    assert not state.needs_fetch(3600.0)
    assert not state.needs_fetch(3609.9)
    assert state.needs_fetch(3610.0)
    recovered = state.on_success(DOC2, 3610.0)
    assert recovered.current() is DOC2
    assert recovered.last_error is None
    assert recovered.last_failure_at is None


def test_failure_without_document_raises_that_error() -> None:
    """With no good document, current() raises the last error itself, not 'not found'."""
    error = HTTPStatusError("metadata request returned HTTP 503", status_code=503)
    state = MetadataCacheState().on_failure(error, 50.0)
    for _ in range(3):
        with pytest.raises(HTTPStatusError) as info:
            state.current()
        assert info.value is error
    assert not state.needs_fetch(55.0)
    assert state.needs_fetch(60.0)


def test_invalidate_makes_document_stale_but_keeps_it() -> None:
    """invalidate() forces a fetch yet keeps the document as a fallback."""
    state = MetadataCacheState().on_success(DOC, 0.0).invalidate()
    assert state.needs_fetch(1.0)
    assert state.current() is DOC
    assert not state.on_success(DOC2, 2.0).needs_fetch(3.0)


def test_invalidate_respects_failure_back_off() -> None:
    """invalidate() does not bypass the wait after a failure."""
    error = TransportError("https://as.example", "ReadTimeout")
    state = MetadataCacheState().on_success(DOC, 0.0).on_failure(error, 100.0).invalidate()
    assert not state.needs_fetch(105.0)
    assert state.needs_fetch(110.0)


def test_clock_going_backwards_makes_document_stale() -> None:
    """A clock earlier than the fetch time refetches rather than trusting the document."""
    state = MetadataCacheState().on_success(DOC, 1000.0)
    assert state.needs_fetch(999.0)


def test_custom_durations_and_validation() -> None:
    """max_age and retry_after_failure are configurable and must not be negative."""
    state = MetadataCacheState(max_age=60.0, retry_after_failure=1.0).on_success(DOC, 0.0)
    assert state.needs_fetch(60.0)
    with pytest.raises(ConfigurationError):
        MetadataCacheState(max_age=-1.0)
