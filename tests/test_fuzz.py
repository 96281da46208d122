"""Property-based fuzzing of every pure parser and rule (hypothesis).

Each parser is fed (a) arbitrary bytes or text, (b) arbitrary JSON values and (c) near-valid
documents: a valid document with one field deleted, replaced by a random JSON value or by raw
JSON text (NaN, huge numbers, deep nesting, lone surrogates, very long strings), a duplicated
key, another encoding, truncation or trailing garbage. A parser must either return a
well-formed result (its invariants are checked) or raise one of the library's typed errors
(``OAuth2TokenManagerError``); pure helpers documented to raise ``TypeError``/``ValueError``
may raise those. Valid inputs generated from the rules must parse to what they say (round trips).

Examples per test: ``FUZZ_EXAMPLES`` (default 200, for CI); ``scripts/fuzz`` runs 100 000.

JWT claims are not fuzzed here: the library has no JWT-claims parser yet (OpenID Connect
support is being written in ``_jwt.py``/``_oidc.py``).
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import math
import os
import re
import string
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar, get_args
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from oauth2_token_manager import OAuth2TokenManagerError, StoreError
from oauth2_token_manager._exceptions import (
    ConfigurationError,
    HTTPStatusError,
    InsecureEndpointError,
    InvalidResponseError,
    OAuth2Error,
    oauth2_error_for,
)
from oauth2_token_manager._http_types import RawResponse, failure_reason, safe_url
from oauth2_token_manager._json import JSONDocumentError, JSONProblem, loads, loads_object
from oauth2_token_manager._metadata import (
    ServerMetadata,
    check_url,
    parse_metadata,
    well_known_urls,
)
from oauth2_token_manager._models import _KINDS, AccessToken, Token, token_from_dict
from oauth2_token_manager._protocol import (
    MAX_EXPIRES_IN,
    IntrospectionResult,
    TokenResponse,
    check_revocation_response,
    error_from_response,
    parse_introspection_response,
    parse_json_object,
    parse_token_response,
)
from oauth2_token_manager._retry import retry_after
from oauth2_token_manager._scopes import canonical, normalize, parse_scope, scope_set
from oauth2_token_manager._www_authenticate import (
    Challenge,
    RetryNewToken,
    RetryWithScopes,
    parse_challenges,
    retry_action,
)

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", 200)),
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
FUZZ = settings.get_profile("ci")
"""Applied to every test here (not loaded globally, so other test modules keep theirs)."""

_E = TypeVar("_E")

# --- strategies -----------------------------------------------------------------------------

SCOPE_CHARS = "".join(chr(c) for c in [0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F)])
SCOPE_TOKEN_RE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
scope_tokens = st.text(alphabet=SCOPE_CHARS, min_size=1, max_size=12)
# Text near the scope alphabet: valid characters, separators and a few forbidden ones.
scopeish_text = st.text(alphabet=SCOPE_CHARS + '  \t"\\\u00e9\u2028\x00', max_size=30)

huge_ints = st.builds(
    lambda digits, lead, sign: sign * lead * 10**digits,
    st.integers(300, 4000),
    st.integers(1, 9),
    st.sampled_from([1, -1]),
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=8)

# Raw JSON text spliced in as a value: what json.dumps never writes but servers may send.
raw_json_values = (
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "1e400",
            "-1e400",
            "1e-400",
            "-0",
            "0",
            "1.5",
            "1" + "0" * 400,
            "-" + "9" * 4000,
            "9" * 5000,  # beyond Python's int string-conversion limit
            '"\\ud800"',
            '"\\u0000"',
            '" 12 "',
            '"1_0"',
            '"nan"',
            '"inf"',
            '"1e999"',
            '"1' + "0" * 400 + '"',
            '"true"',
            '"FALSE"',
            '""',
            '"Bearer"',
            '"bEaReR"',
            '"DPoP"',
            '"a  b "',
            "true",
            "null",
            "[]",
            "{}",
            '["a", "b"]',
            '["a", 1]',
        ]
    )
    | st.integers(1_000, 200_000).map(lambda n: json.dumps("x" * n))
    | st.text().map(lambda t: json.dumps(t, ensure_ascii=False))
)

_MARK = "\x00MARK\x00"


@st.composite
def near_valid(
    draw: st.DrawFn, base: Mapping[str, Any], values: st.SearchStrategy[Any] = json_values
) -> bytes:
    """``base`` as JSON bytes with one mutation of a field, the text or the encoding."""
    doc = dict(base)
    fields = sorted(base) * 3
    key = draw(st.sampled_from(fields) | st.text(max_size=8) if base else st.text(max_size=8))
    op = draw(st.sampled_from(["delete", "set", "text", "raw", "duplicate", "nest", "none"]))
    raw = draw(raw_json_values) if op in ("raw", "duplicate") else ""
    if op == "nest":  # the field's value inside many arrays or objects
        depth = draw(st.integers(1, 100_000))
        inner = json.dumps(doc.get(key))
        raw = draw(
            st.sampled_from(
                ["[" * depth + inner + "]" * depth, '{"v":' * depth + inner + "}" * depth]
            )
        )
        op = "raw"
    if op == "delete":
        doc.pop(key, None)
    elif op == "set":
        doc[key] = draw(values)
    elif op == "text":
        doc[key] = draw(st.text() | st.text(alphabet=st.characters(max_codepoint=0x7F)))
    elif op == "raw":
        doc[key] = _MARK
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    if op == "raw":
        text = text.replace(json.dumps(_MARK), raw)
    elif op == "duplicate":
        text = text[:-1] + (", " if doc else "") + json.dumps(key) + ": " + raw + "}"
    encoding = draw(st.sampled_from(["utf-8"] * 6 + ["utf-8-sig", "utf-16", "utf-32", "latin-1"]))
    body = text.encode(encoding, errors="surrogatepass" if encoding != "latin-1" else "replace")
    damage = draw(st.sampled_from(["none"] * 6 + ["truncate", "trail"]))
    if damage == "truncate":
        body = body[: draw(st.integers(0, len(body)))]
    elif damage == "trail":
        body += draw(st.binary(min_size=1, max_size=8))
    return body


def json_bytes(values: st.SearchStrategy[Any] = json_values) -> st.SearchStrategy[bytes]:
    """Arbitrary JSON values as UTF-8 bytes."""
    return values.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"))


any_body = st.binary(max_size=300) | json_bytes() | json_bytes(json_objects)
statuses = st.sampled_from([200, 201, 204, 299, 301, 400, 401, 403, 404, 429, 500, 503]) | (
    st.integers(100, 599)
)
header_text = st.text(max_size=40)


OK_STATUS = st.just(200)


def response(
    body: st.SearchStrategy[bytes], status: st.SearchStrategy[int] = OK_STATUS
) -> st.SearchStrategy[RawResponse]:
    """A ``RawResponse`` with the given body and status and random headers."""
    headers = st.fixed_dictionaries(
        {},
        optional={
            "Content-Type": st.sampled_from(["application/json", "text/html"]) | header_text,
            "Retry-After": header_text,
        },
    )
    return st.builds(
        RawResponse,
        status_code=status,
        headers=headers,
        content=body,
        url=st.just("https://as.example/token"),
    )


def outcome(
    func: Callable[..., _E],
    *args: Any,
    allowed: tuple[type[BaseException], ...] = (),
    **kwargs: Any,
) -> tuple[_E | None, BaseException | None]:
    """``(result, None)`` or ``(None, error)`` for a typed error; anything else propagates."""
    try:
        return func(*args, **kwargs), None
    except (OAuth2TokenManagerError, *allowed) as exc:
        return None, exc


def is_number(value: Any) -> bool:
    """A real, finite number (not a boolean)."""
    return isinstance(value, float) and math.isfinite(value)


def valid_scopes(scopes: Any) -> bool:
    """A frozenset of RFC 6749 §3.3 scope tokens."""
    return isinstance(scopes, frozenset) and all(
        isinstance(t, str) and SCOPE_TOKEN_RE.fullmatch(t) for t in scopes
    )


# --- token responses ------------------------------------------------------------------------

HUGE_EXPIRES_IN = b'{"access_token":"a","token_type":"bearer","expires_in":1' + b"0" * 400 + b"}"
ACCESS = "SECRET-access-0123456789"
REFRESH = "SECRET-refresh-0123456789"
TOKEN_DOC = {
    "access_token": ACCESS,
    "token_type": "Bearer",
    "expires_in": 3600,
    "scope": "read write",
    "refresh_token": REFRESH,
    "id_token": "eyJhbGciOiJub25lIn0.e30.",
    "x_extra": {"a": [1, 2]},
}
VSCHARS = re.compile(r"[\x20-\x7e]+")  # RFC 6749 A.12, A.17: what a header can carry
requested = st.none() | st.frozensets(scope_tokens, max_size=3)


def check_token_response(result: TokenResponse, req: frozenset[str] | None) -> None:
    """Invariants of a parsed token response."""
    assert isinstance(result.access_token, str) and VSCHARS.fullmatch(result.access_token)
    assert result.token_type in {"Bearer", "DPoP"}
    assert result.expires_in is None or (
        is_number(result.expires_in) and 0 < result.expires_in <= MAX_EXPIRES_IN
    )
    assert result.scopes is None or valid_scopes(result.scopes)
    assert result.refresh_token is None or (
        isinstance(result.refresh_token, str) and VSCHARS.fullmatch(result.refresh_token)
    )
    assert result.id_token is None or (isinstance(result.id_token, str) and result.id_token)
    assert not set(result.extra) & {"access_token", "token_type", "expires_in", "scope"}
    assert ACCESS not in repr(result) and REFRESH not in repr(result)


def check_token_outcome(
    raw: RawResponse, req: frozenset[str] | None
) -> tuple[TokenResponse | None, BaseException | None]:
    """Parse, then check the result's invariants or the error's type and secrecy."""
    result, error = outcome(parse_token_response, raw, req)
    if result is not None:
        assert raw.is_success
        check_token_response(result, req)
    else:
        assert isinstance(error, OAuth2TokenManagerError)
        assert ACCESS not in str(error) and REFRESH not in str(error)
        if not raw.is_success:
            assert isinstance(error, (OAuth2Error, HTTPStatusError))
            assert error.status_code == raw.status_code
    return result, error


@FUZZ
@given(raw=response(any_body, statuses), req=requested)
@example(raw=RawResponse(200, {}, HUGE_EXPIRES_IN, "https://as"), req=None)
def test_token_response_arbitrary_bodies(raw: RawResponse, req: frozenset[str] | None) -> None:
    """parse_token_response on arbitrary bytes/JSON: a valid TokenResponse or a typed error."""
    check_token_outcome(raw, req)


def token_body(**fields: str) -> RawResponse:
    """A 200 token response of ``TOKEN_DOC`` with some fields replaced."""
    return RawResponse(200, {}, json.dumps({**TOKEN_DOC, **fields}).encode(), "https://as")


@FUZZ
@given(raw=response(near_valid(TOKEN_DOC)), req=requested)
@example(raw=token_body(access_token="\x1f"), req=None)  # control character
@example(raw=token_body(access_token="caf\u00e9"), req=None)  # cannot go in a header
@example(raw=token_body(access_token="\ud800"), req=None)  # lone surrogate: cannot be hashed
@example(raw=token_body(refresh_token="r\r\nx"), req=None)
def test_token_response_near_valid(raw: RawResponse, req: frozenset[str] | None) -> None:
    """One mutated field/encoding of a valid token response: valid result or typed error."""
    result, _ = check_token_outcome(raw, req)
    if result is not None:
        data = json.loads(raw.content)
        if data.get("scope") is None:
            assert result.scopes == req


@FUZZ
@given(raw=response(near_valid({"error": "invalid_grant", "error_description": "d"}), statuses))
def test_token_error_responses_near_valid(raw: RawResponse) -> None:
    """Near-valid error bodies on any status become typed errors carrying the status."""
    result, _ = check_token_outcome(raw, None)
    assert result is None or raw.is_success


@st.composite
def valid_token_responses(draw: st.DrawFn) -> tuple[dict[str, Any], TokenResponse]:
    """A valid token response (liberal spellings) and what it must parse to."""
    tokens = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1)
    access = draw(tokens)
    kind = draw(st.sampled_from(["Bearer", "DPoP"]))
    spelled = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in kind)
    doc: dict[str, Any] = {"access_token": access, "token_type": spelled}
    expires = draw(st.none() | st.floats(min_value=0.001, max_value=MAX_EXPIRES_IN))
    if expires is not None:
        if expires >= 1 and draw(st.booleans()):
            expires = float(int(expires))
            doc["expires_in"] = int(expires)
        else:
            doc["expires_in"] = draw(st.sampled_from([expires, repr(expires), f" {expires!r} "]))
    scopes = draw(st.none() | st.frozensets(scope_tokens, max_size=4))
    if scopes is not None:
        listed = sorted(scopes)
        doc["scope"] = draw(st.sampled_from([" ".join(listed), "  ".join(listed) + " ", listed]))
    refresh = draw(st.none() | tokens)
    if refresh is not None:
        doc["refresh_token"] = refresh
    expected = TokenResponse(access, kind, expires, scopes, refresh, None, {})
    return doc, expected


@FUZZ
@given(case=valid_token_responses(), req=requested)
def test_valid_token_responses_parse(
    case: tuple[dict[str, Any], TokenResponse], req: frozenset[str] | None
) -> None:
    """Every valid token response parses to exactly the values it states."""
    doc, expected = case
    raw = RawResponse(200, {}, json.dumps(doc).encode(), "https://as/token")
    result = parse_token_response(raw, req)
    assert result.access_token == expected.access_token
    assert result.token_type == expected.token_type
    assert result.expires_in == expected.expires_in
    assert result.scopes == (expected.scopes if "scope" in doc else req)
    assert result.refresh_token == expected.refresh_token
    check_token_response(result, req)


# --- error responses, revocation, JSON objects ----------------------------------------------


@FUZZ
@given(
    raw=response(
        any_body | near_valid({"error": "invalid_client", "error_description": "d"}), statuses
    )
)
def test_error_from_response_never_raises(raw: RawResponse) -> None:
    """error_from_response always returns an OAuth2Error/HTTPStatusError with the status."""
    error = error_from_response(raw)
    assert isinstance(error, (OAuth2Error, HTTPStatusError))
    assert error.status_code == raw.status_code
    assert error.retry_after == raw.headers.get("retry-after")
    if isinstance(error, OAuth2Error):
        assert isinstance(error.error, str) and error.error
        assert type(error) is oauth2_error_for(error.error)
        assert error.error_description is None or isinstance(error.error_description, str)
        assert error.error_uri is None or isinstance(error.error_uri, str)
    str(error)


@FUZZ
@given(raw=response(any_body | near_valid({"error": "x"}), statuses))
def test_revocation_response(raw: RawResponse) -> None:
    """check_revocation_response: None for any 2xx, else a typed error with the status."""
    result, error = outcome(check_revocation_response, raw)
    if raw.is_success:
        assert error is None and result is None
    else:
        assert isinstance(error, (OAuth2Error, HTTPStatusError))
        assert error.status_code == raw.status_code


@FUZZ
@given(raw=response(any_body | near_valid(TOKEN_DOC) | near_valid({}), statuses))
@example(raw=RawResponse(200, {}, b"[" * 100_000, "https://as"))
@example(raw=RawResponse(200, {}, b'{"a": 1, "a": 2}', "https://as"))
def test_parse_json_object(raw: RawResponse) -> None:
    """parse_json_object: the unambiguous JSON object (as json.loads reads it) or a typed error."""
    result, error = outcome(parse_json_object, raw, "response")
    if result is not None:
        assert isinstance(result, dict)
        assert result == json.loads(raw.content)
    else:
        assert isinstance(error, InvalidResponseError)


# --- the strict JSON reader -----------------------------------------------------------------


def finite_floats_only(value: Any) -> bool:
    """Every float inside ``value`` is finite (the reader lets no NaN or infinity through)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(finite_floats_only(item) for item in value)
    if isinstance(value, dict):
        return all(finite_floats_only(item) for item in value.values())
    return True


json_documents = (
    any_body
    | near_valid(TOKEN_DOC)
    | near_valid({"sub": "alice", "sub_x": [1.5, {"a": None}]})
    | st.text(max_size=300)
    | json_bytes().map(lambda b: b.decode("utf-8", "surrogatepass"))
)


@FUZZ
@given(document=json_documents)
@example(document=b"[" * 100_000)
@example(document=b'{"v":' * 100_000)
@example(document=b"9" * 5000)
@example(document=b"[" * 129 + b"]" * 129)
@example(document=b"[" * 990 + b"]" * 990)
@example(document=b"[1e400]")
@example(document=b"\xef\xbb\xbf{}")
@example(document="\ufeff\ufeff{}")
def test_json_reader_arbitrary_documents(document: bytes | str) -> None:
    """loads on arbitrary bytes or text: only JSONDocumentError escapes; what it accepts is
    UTF-8 JSON that json.loads reads the same, with only finite floats."""
    try:
        value = loads(document)
    except JSONDocumentError as exc:
        assert exc.kind in get_args(JSONProblem) and exc.kind != "not_object"
        assert exc.malformed == (exc.kind in ("encoding", "syntax"))
        return
    text = document.decode("utf-8") if isinstance(document, bytes) else document
    assert value == json.loads(text.removeprefix("\ufeff"))
    assert finite_floats_only(value)


@FUZZ
@given(value=json_values, as_text=st.booleans())
def test_json_reader_round_trip(value: Any, as_text: bool) -> None:
    """Every JSON value json.dumps writes (finite floats, huge integers) reads back equal,
    as UTF-8 bytes or as text (which may hold lone surrogates the bytes cannot)."""
    document = json.dumps(value, ensure_ascii=not as_text)
    assert loads(document if as_text else document.encode()) == value


@FUZZ
@given(document=json_documents)
def test_json_reader_object(document: bytes | str) -> None:
    """loads_object: a dict, or JSONDocumentError (``not_object`` for other JSON values)."""
    try:
        value = loads_object(document)
    except JSONDocumentError as exc:
        if exc.kind == "not_object":
            assert not isinstance(loads(document), dict)
        return
    assert isinstance(value, dict)


# --- introspection --------------------------------------------------------------------------

INTROSPECTION_DOC = {
    "active": True,
    "scope": "read write",
    "client_id": "c",
    "username": "u",
    "token_type": "Bearer",
    "exp": 1_700_003_600,
    "iat": 1_700_000_000,
    "nbf": 1_700_000_000,
    "sub": "s",
    "aud": ["api"],
    "iss": "https://as.example",
}


def check_introspection(result: IntrospectionResult) -> None:
    """Invariants of an introspection result."""
    assert isinstance(result.active, bool)
    assert result.scopes is None or valid_scopes(result.scopes)
    for name in ("exp", "iat", "nbf"):
        value = getattr(result, name)
        assert value is None or is_number(value)
    for name in ("client_id", "username", "token_type", "sub", "iss"):
        value = getattr(result, name)
        assert value is None or isinstance(value, str)
    assert isinstance(result.aud, tuple) and all(isinstance(a, str) for a in result.aud)


@FUZZ
@given(raw=response(any_body | near_valid(INTROSPECTION_DOC), statuses))
@example(raw=RawResponse(200, {}, b'{"active":true,"exp":1' + b"0" * 400 + b"}", "https://as"))
def test_introspection_response(raw: RawResponse) -> None:
    """parse_introspection_response: a valid IntrospectionResult or a typed error."""
    result, error = outcome(parse_introspection_response, raw)
    if result is not None:
        assert raw.is_success
        check_introspection(result)
    elif not raw.is_success:
        assert isinstance(error, (OAuth2Error, HTTPStatusError))


@FUZZ
@given(
    data=json_objects
    | st.builds(
        lambda key, value: {**INTROSPECTION_DOC, key: value},
        st.sampled_from(sorted(INTROSPECTION_DOC)),
        json_values,
    )
)
@example(data={"active": True, "iat": 10**400})
def test_introspection_from_mapping(data: dict[str, Any]) -> None:
    """IntrospectionResult.from_mapping raises only its documented TypeError/ValueError."""
    result, _ = outcome(IntrospectionResult.from_mapping, data, allowed=(TypeError, ValueError))
    if result is not None:
        check_introspection(result)


# --- metadata -------------------------------------------------------------------------------

ISSUER = "https://as.example"
METADATA_DOC = {
    "issuer": ISSUER,
    "token_endpoint": f"{ISSUER}/token",
    "introspection_endpoint": f"{ISSUER}/introspect",
    "revocation_endpoint": f"{ISSUER}/revoke",
    "jwks_uri": f"{ISSUER}/jwks",
    "scopes_supported": ["openid", "read"],
    "grant_types_supported": ["client_credentials", "refresh_token"],
    "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    "mtls_endpoint_aliases": {"token_endpoint": "https://mtls.as.example/token"},
    "authorization_response_iss_parameter_supported": True,
    "x_custom": {"a": [1, 2]},
}
url_texts = (
    st.sampled_from(
        [
            "https://as.example/t",
            "HTTPS://AS.EXAMPLE/",
            "http://127.0.0.1:8080/t",
            "http://127.255.0.1/t",
            "http://localhost/t",
            "http://[::1]/t",
            "http://[::1%25eth0]/t",
            "http://[::ffff:127.0.0.1]/t",
            "https://[/t",
            "https://[::1/t",
            "https://h:99999/",
            "https://h:-1/",
            "https://h:\uff11/",
            "https://h:/",
            "https://u:p@h/",
            "https://h\u2100/",
            "//h/p",
            "https:///p",
            "https:",
            "ftp://h/",
            "http://h.example/",
            "",
            " https://h/ ",
            "https://h/\n",
        ]
    )
    | st.builds(
        lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
        st.sampled_from(["https", "http", "HTTP", "ftp", ""]),
        st.sampled_from(["h", "127.0.0.1", "[::1]", "localhost", "[", "a@b", "", "h.example"])
        | st.text(max_size=10),
        st.sampled_from(["", ":443", ":0", ":65536", ":x"]),
        st.text(max_size=10),
    )
    | st.text(max_size=40)
)
overrides = st.dictionaries(
    st.sampled_from(["token_endpoint", "jwks_uri", "issuer", "scopes_supported", "x_other"]),
    url_texts,
    max_size=2,
)


def check_metadata(md: ServerMetadata, expected_issuer: str, allow: bool) -> None:
    """Invariants of a parsed metadata document."""
    assert isinstance(md, ServerMetadata)
    assert md.issuer.removesuffix("/") == expected_issuer.removesuffix("/")
    for field, value in md.items():
        if field.endswith("_endpoint") or field in ("jwks_uri", "issuer"):
            assert isinstance(value, str) and value
            check_url(value, allow_insecure_loopback=allow)
    for alias in (md.get("mtls_endpoint_aliases") or {}).values():
        check_url(alias, allow_insecure_loopback=allow)
    for prop in (
        "token_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
        "jwks_uri",
    ):
        value = getattr(md, prop)
        assert value is None or isinstance(value, str)
    for prop in ("grant_types_supported", "token_endpoint_auth_methods_supported"):
        values = getattr(md, prop)
        assert isinstance(values, tuple) and all(isinstance(v, str) for v in values)
    assert md.scopes_supported is None or all(isinstance(v, str) for v in md.scopes_supported)
    assert isinstance(md.authorization_response_iss_parameter_supported, bool)
    repr(md)


@FUZZ
@given(
    body=any_body | near_valid(METADATA_DOC, json_values | url_texts),
    content_type=st.none() | st.sampled_from(["application/json", "text/plain"]) | header_text,
    status=statuses,
    expected=st.sampled_from([ISSUER, ISSUER + "/"]) | url_texts,
    url=st.sampled_from([f"{ISSUER}/.well-known/openid-configuration"]) | url_texts,
    over=overrides,
    allow=st.booleans(),
)
@example(
    body=json.dumps({**METADATA_DOC, "token_endpoint": f"{ISSUER}/t\x7f"}).encode(),
    content_type=None,
    status=200,
    expected=ISSUER,
    url=ISSUER,
    over={},
    allow=False,
)
def test_parse_metadata(
    body: bytes,
    content_type: str | None,
    status: int,
    expected: str,
    url: str,
    over: dict[str, str],
    allow: bool,
) -> None:
    """parse_metadata: a validated ServerMetadata or a typed error, for any body and config."""
    result, _ = outcome(
        parse_metadata,
        body,
        content_type,
        status,
        expected,
        url,
        overrides=over,
        allow_insecure_loopback=allow,
    )
    if result is not None:
        assert 200 <= status < 300
        check_metadata(result, expected, allow)
        for field, value in over.items():
            assert result[field] == value


@FUZZ
@given(
    doc=st.fixed_dictionaries(
        {"issuer": st.just(ISSUER)},
        optional={
            "token_endpoint": st.just(f"{ISSUER}/t"),
            "jwks_uri": st.just("http://127.0.0.1:9/jwks"),
            "scopes_supported": st.lists(scope_tokens, max_size=3),
            "grant_types_supported": st.lists(st.text(max_size=5), max_size=3),
            "x_other": json_values,
        },
    ),
    trailing_slash=st.booleans(),
)
def test_valid_metadata_parses(doc: dict[str, Any], trailing_slash: bool) -> None:
    """Every valid document parses, keeping each field (lists as tuples)."""
    expected = ISSUER + ("/" if trailing_slash else "")
    body = json.dumps(doc).encode()
    md = parse_metadata(
        body, "application/json", 200, expected, f"{ISSUER}/x", overrides={},
        allow_insecure_loopback=True,
    )  # fmt: skip
    check_metadata(md, expected, True)
    assert set(md) == set(doc)
    assert md.scopes_supported == (
        tuple(doc["scopes_supported"]) if "scopes_supported" in doc else None
    )


@FUZZ
@given(issuer=url_texts)
def test_well_known_urls_arbitrary(issuer: str) -> None:
    """well_known_urls: two or three URLs on the issuer's origin, or ConfigurationError."""
    urls, error = outcome(well_known_urls, issuer)
    if urls is None:
        assert isinstance(error, ConfigurationError)
        return
    assert len(urls) in (2, 3)
    origin = urlsplit(urls[0])
    for url in urls:
        assert "/.well-known/" in url
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc)


HOST_RE = r"[a-z][a-z0-9-]{0,9}(\.[a-z]{2,5}){0,2}(:[1-9][0-9]{0,3})?"
path_segments = st.text(alphabet=string.ascii_letters + string.digits + "-._~%", min_size=1)


@FUZZ
@given(
    host=st.from_regex(HOST_RE, fullmatch=True),
    segments=st.lists(path_segments, max_size=3),
    slash=st.booleans(),
)  # fmt: skip
def test_well_known_urls_valid(host: str, segments: list[str], slash: bool) -> None:
    """For valid issuers, the URLs are exactly the OpenID and RFC 8414 locations."""
    path = "".join("/" + s for s in segments)
    issuer = f"https://{host}{path}" + ("/" if slash else "")
    urls = well_known_urls(issuer)
    base = f"https://{host}"
    if not path:
        assert urls == [
            f"{base}/.well-known/openid-configuration",
            f"{base}/.well-known/oauth-authorization-server",
        ]
    else:
        assert urls == [
            f"{base}{path}/.well-known/openid-configuration",
            f"{base}/.well-known/oauth-authorization-server{path}",
            f"{base}/.well-known/openid-configuration{path}",
        ]


@FUZZ
@given(url=url_texts, allow=st.booleans())
@example(url="https://h/\n", allow=False)  # httpx refuses control characters
@example(url="https://h\x00/", allow=False)
@example(url="https://xn--/", allow=False)  # an invalid IDNA host
def test_check_url(url: str, allow: bool) -> None:
    """check_url passes only requestable https (or allowed loopback http) URLs; else typed."""
    _, error = outcome(check_url, url, allow_insecure_loopback=allow)
    if error is not None:
        assert isinstance(error, InsecureEndpointError)
        return
    parts = urlsplit(url)
    assert parts.hostname
    scheme = parts.scheme.lower()
    assert scheme == "https" or (scheme == "http" and allow)
    httpx.Request("POST", url)  # an accepted endpoint can be requested


# --- HTTP types -----------------------------------------------------------------------------


@FUZZ
@given(url=url_texts, secret=st.text(alphabet=string.ascii_letters, min_size=12, max_size=20))
def test_safe_url_and_failure_reason(url: str, secret: str) -> None:
    """safe_url never raises and drops query, fragment and password; failure_reason too."""
    assume(secret not in url)
    shown = safe_url(url)
    assert isinstance(shown, str)
    assert ("?" not in shown and "#" not in shown) or shown == "<invalid URL>"
    full = f"{url}?token={secret}"
    message = failure_reason(ValueError(f"boom at {full}"), full)
    assert secret not in message


# --- WWW-Authenticate -----------------------------------------------------------------------

TOKEN_CHARS = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
auth_tokens = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=10)
header_chars = st.text(alphabet=' \t,="\\/+=abcBEARER' + TOKEN_CHARS[:14], max_size=60)
ows = st.sampled_from(["", " ", "\t", "  "])


@st.composite
def rendered_challenges(draw: st.DrawFn) -> tuple[list[str], list[Challenge]]:
    """Valid challenges and header lines that spell them with liberal whitespace and commas."""
    challenges: list[Challenge] = []
    parts: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        scheme = draw(auth_tokens)
        form = draw(st.sampled_from(["params", "token68", "bare"]))
        if form == "token68":
            t68 = draw(st.from_regex(r"[A-Za-z0-9\-._~+/]+=*", fullmatch=True))
            challenges.append(Challenge(scheme.lower(), {}, t68))
            parts.append(f"{scheme} {t68}{draw(ows)}")
            continue
        params: dict[str, str] = {}
        rendered: list[str] = []
        names = draw(st.lists(auth_tokens, max_size=4, unique_by=str.lower))
        if form == "bare":
            names = []
        for name in names:
            value = draw(st.text(st.characters() | st.sampled_from(',"\\= '), max_size=15))
            params[name.lower()] = value
            if re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", value) and draw(st.booleans()):
                spelled = value
            else:
                spelled = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            rendered.append(f"{name}{draw(ows)}={draw(ows)}{spelled}")
        separator = draw(ows) + "," + draw(st.sampled_from(["", ",", " ,"])) + draw(ows)
        text = scheme + (" " + draw(ows) + separator.join(rendered) if rendered else "")
        challenges.append(Challenge(scheme.lower(), params, None))
        parts.append(text)
    # Split the challenges over one or more header lines.
    lines: list[str] = []
    current: list[str] = []
    for part in parts:
        current.append(part)
        if draw(st.booleans()):
            lines.append((draw(ows) + ", ").join(current))
            current = []
    if current:
        lines.append(", ".join(current))
    return lines, challenges


@FUZZ
@given(headers=st.lists(st.text() | header_chars, max_size=3))
@example(headers=['Bearer realm="unterminated\\'])
@example(headers=["Bearer , , ,realm=x"])
def test_parse_challenges_never_raises(headers: list[str]) -> None:
    """parse_challenges on arbitrary text never raises; every challenge is well-formed."""
    for challenge in parse_challenges(headers):
        assert re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9a-z]+", challenge.scheme)
        for name, value in challenge.params.items():
            assert re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9a-z]+", name)
            assert isinstance(value, str)
        assert challenge.token68 is None or not challenge.params


@FUZZ
@given(case=rendered_challenges())
def test_parse_challenges_round_trip(case: tuple[list[str], list[Challenge]]) -> None:
    """Rendered challenges (quoted values with escapes and commas) parse back to themselves."""
    lines, challenges = case
    assert parse_challenges(lines) == challenges


@FUZZ
@given(
    status=st.sampled_from([200, 401, 403, 500]) | st.integers(),
    headers=st.lists(st.text() | header_chars, max_size=2)
    | rendered_challenges().map(lambda case: case[0]),
    scope=st.none() | scopeish_text,
    error=st.sampled_from([None, "invalid_token", "insufficient_scope", "other"]),
    allow=st.booleans(),
)
def test_retry_action(
    status: int, headers: list[str], scope: str | None, error: str | None, allow: bool
) -> None:
    """retry_action never raises and retries only on 401 or (if allowed) 403 with a scope."""
    if error is not None or scope is not None:
        params = [f'{n}="{v}"' for n, v in (("error", error), ("scope", scope)) if v is not None]
        headers = [*headers, "Bearer " + ", ".join(p.replace("\\", "") for p in params)]
    action = retry_action(status, headers, retry_insufficient_scope=allow)
    assert action is None or isinstance(action, (RetryNewToken, RetryWithScopes))
    if status not in (401, 403):
        assert action is None
    if isinstance(action, RetryNewToken):
        assert status == 401
    if isinstance(action, RetryWithScopes):
        assert status == 403 and allow
        assert action.scopes and valid_scopes(action.scopes)


# --- scopes ---------------------------------------------------------------------------------


@FUZZ
@given(value=json_values | scopeish_text | st.lists(scopeish_text, max_size=4))
def test_parse_scope(value: Any) -> None:
    """parse_scope: the valid non-empty space-separated tokens, or TypeError/ValueError."""
    result, _ = outcome(parse_scope, value, allowed=(TypeError, ValueError))
    if result is not None:
        assert valid_scopes(result)
        if isinstance(value, str):
            assert result == {t for t in value.split(" ") if t}


scope_lists = st.lists(scope_tokens | scopeish_text, max_size=5)


def with_permutation(
    lists: st.SearchStrategy[list[str]],
) -> st.SearchStrategy[tuple[list[str], list[str]]]:
    """A list and a permutation of it."""
    return lists.flatmap(lambda items: st.tuples(st.just(items), st.permutations(items)))


@FUZZ
@given(case=with_permutation(scope_lists))
@example(case=([], []))
def test_canonical_idempotent_and_order_insensitive(case: tuple[list[str], list[str]]) -> None:
    """canonical is idempotent, ignores order and duplicates, or raises ValueError."""
    scopes, shuffled = case
    result, _ = outcome(canonical, scopes, allowed=(ValueError,))
    if result is None:
        return
    assert result == " ".join(sorted(set(scopes)))
    assert canonical(result) == result
    assert canonical(result.split(" ") if result else []) == result
    assert canonical([*shuffled, *shuffled]) == result


@FUZZ
@given(case=with_permutation(scope_lists), text=scopeish_text)
def test_normalize(case: tuple[list[str], list[str]], text: str) -> None:
    """normalize: (valid set, its canonical string), stable under reordering, or ValueError."""
    for scopes, shuffled in (case, ([text], [text])):
        result, _ = outcome(normalize, scopes, allowed=(ValueError,))
        if result is None:
            continue
        tokens, key = result
        assert valid_scopes(tokens)
        assert key == (canonical(tokens) if tokens else "")
        assert normalize(key) == result
        assert normalize(shuffled) == result
        assert normalize(" ".join(scopes)) == result


@FUZZ
@given(scopes=st.lists(scope_tokens | scopeish_text | json_values, max_size=4))
def test_scope_set(scopes: list[Any]) -> None:
    """scope_set: the set of valid scope tokens, or ValueError/TypeError (unhashable items)."""
    result, _ = outcome(scope_set, scopes, allowed=(ValueError, TypeError))
    if result is not None:
        assert valid_scopes(result) and result == set(scopes)


# --- stored tokens --------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
opt_text = st.none() | st.text(max_size=10)
scope_sets = st.none() | st.frozensets(scope_tokens, max_size=3)
json_dicts = st.dictionaries(
    st.text(max_size=5),
    st.recursive(
        st.none() | st.booleans() | st.integers() | finite | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=8,
    ),
    max_size=3,
)
tokens = st.builds(
    lambda cls, **kw: cls(**kw),
    st.sampled_from(sorted(_KINDS.values(), key=lambda cls: cls.kind)),
    value=st.text(min_size=1, max_size=20),
    issuer=st.text(max_size=20),
    client_id=st.text(max_size=10),
    subject=opt_text,
    scopes=scope_sets,
    expires_at=st.none() | finite,
    issued_at=finite,
    updated_at=finite,
    token_type=st.sampled_from(["Bearer", "DPoP"]),
    resource=opt_text,
    audience=st.lists(st.text(max_size=5), max_size=3).map(tuple),
    extra=json_dicts,
    introspected_at=st.none() | finite,
    active=st.booleans(),
    introspection=st.none() | json_dicts,
    requested_scopes=scope_sets,
    grant_id=opt_text,
)


def check_token(token: Token) -> None:
    """A loaded token has the declared field types and every derived view works."""
    assert isinstance(token, Token) and type(token) in _KINDS.values()
    assert isinstance(token.value, str) and token.value
    for name in ("issuer", "client_id", "token_type"):
        assert isinstance(getattr(token, name), str)
    for name in ("subject", "resource", "grant_id"):
        assert getattr(token, name) is None or isinstance(getattr(token, name), str)
    for name in ("issued_at", "updated_at", "expires_at", "introspected_at"):
        value = getattr(token, name)
        assert (value is None and name in ("expires_at", "introspected_at")) or (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    assert isinstance(token.active, bool)
    for name in ("scopes", "requested_scopes"):
        assert getattr(token, name) is None or valid_scopes(getattr(token, name))
    assert isinstance(token.audience, tuple) and all(isinstance(a, str) for a in token.audience)
    assert isinstance(token.extra, Mapping)
    assert token.introspection is None or isinstance(token.introspection, Mapping)
    repr(token)
    token.group  # noqa: B018
    token.scope_key  # noqa: B018
    token.expired(0.0)


@FUZZ
@given(token=tokens)
def test_token_round_trip(token: Token) -> None:
    """token_from_dict(to_json) restores an equal token of the same kind."""
    copy = token_from_dict(json.loads(token.to_json()))
    assert type(copy) is type(token)
    assert copy == token
    check_token(copy)


TOKEN_RECORD = AccessToken(
    "v", "https://as", "c", scopes=frozenset({"a"}), expires_at=1.0, audience=("x",)
).to_dict()


@FUZZ
@given(
    record=json_objects
    | near_valid(TOKEN_RECORD).map(lambda b: json.loads(b) if _loads_ok(b) else {})
    | st.builds(
        lambda key, value: {**TOKEN_RECORD, key: value},
        st.sampled_from(sorted(TOKEN_RECORD)),
        json_values,
    )
)
@example(record={**TOKEN_RECORD, "expires_at": "soon"})
@example(record={**TOKEN_RECORD, "scopes": "abc"})
@example(record={**TOKEN_RECORD, "scopes": ["a b"]})
@example(record={**TOKEN_RECORD, "audience": "api"})
@example(record={**TOKEN_RECORD, "issued_at": 10**400})
@example(record={**TOKEN_RECORD, "extra": ["ab"]})
def test_token_from_dict_arbitrary(record: Any) -> None:
    """token_from_dict on arbitrary records: a well-formed Token or StoreError, nothing else."""
    token, error = outcome(token_from_dict, record)
    if token is not None:
        check_token(token)
    else:
        assert isinstance(error, StoreError)


def _loads_ok(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):
        return False


# --- Retry-After ----------------------------------------------------------------------------

aware_datetimes = st.datetimes(
    min_value=datetime(1900, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.just(timezone.utc)
    | st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-1439, 1439)),
).map(lambda when: when.replace(microsecond=0))
http_dates = st.builds(
    lambda when, gmt: email.utils.format_datetime(when, usegmt=gmt and not when.utcoffset()),
    aware_datetimes,
    st.booleans(),
)
retry_after_texts = (
    st.text(max_size=40)
    | st.text(alphabet=string.digits + " +-.e", max_size=12)
    | st.integers(0, 10**30).map(str)
    | http_dates
    | st.from_regex(r"[A-Z][a-z]{2}, \d{1,25} [A-Z][a-z]{2} \d{1,25} \d{1,25}:\d{2}:\d{2} GMT")
)


@FUZZ
@given(value=retry_after_texts, now=st.floats(0, 4e9))
def test_retry_after(value: str, now: float) -> None:
    """retry_after on any header text is None or a finite non-negative delay, never raises."""
    delay = retry_after({"retry-after": value}, now)
    assert delay is None or (isinstance(delay, float) and 0 <= delay < float("inf"))


@FUZZ
@given(when=aware_datetimes, now=st.floats(0, 4e9), pad=ows)
def test_retry_after_dates_and_seconds(when: datetime, now: float, pad: str) -> None:
    """An HTTP date gives the seconds until it (0 when past); a number gives itself."""
    text = pad + email.utils.format_datetime(when) + pad
    assert retry_after({"retry-after": text}, now) == max(0.0, when.timestamp() - now)
    seconds = int(now)
    assert retry_after({"retry-after": f"{pad}{seconds}{pad}"}, 0.0) == float(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "\u00b2",
        "Mon, 01 Jan 2000 99999999999999999999:00:00 GMT",
        "Mon, 99999999999999999999 Jan 2000 00:00:00 GMT",
        "Mon, 01 Jan 99999999999999999999 00:00:00 GMT",
        "Mon, 01 Jan 2000 00:00:00 +99999999999999999999",
    ],
)
def test_retry_after_known_crashes(value: str) -> None:
    """Regression examples of retry_after crashes found by fuzzing: now None, not an error."""
    delay = retry_after({"retry-after": value}, 0.0)
    assert delay is None or delay >= 0


id_claim_values = json_values  # any JSON value for any claim


@FUZZ
@given(
    claims=st.dictionaries(
        st.sampled_from(["iss", "sub", "aud", "azp", "exp", "iat", "nonce", "x"]),
        id_claim_values,
    ),
    nonce=st.none() | st.text(max_size=8),
)
def test_id_token_claims(claims: dict[str, Any], nonce: str | None) -> None:
    """ID token claim checks on any JSON claims: pass or IDTokenError, nothing else."""
    from oauth2_token_manager import IDTokenError
    from oauth2_token_manager._oidc import check_id_token_claims, check_refreshed_id_token

    try:
        check_id_token_claims(
            claims, issuer="https://as", client_id="c", now=1e9, leeway=60, nonce=nonce
        )
    except IDTokenError:
        return
    assert claims["iss"] == "https://as" and isinstance(claims["sub"], str) and claims["sub"]
    try:
        check_refreshed_id_token(claims, claims)
    except IDTokenError:
        raise AssertionError("a valid ID token must match itself") from None


@FUZZ
@given(header=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.hex()))
def test_jwt_shape_and_header(header: str) -> None:
    """is_jwe and unverified_header on any text: a result or IDTokenError, nothing else."""
    from oauth2_token_manager import IDTokenError
    from oauth2_token_manager._oidc import is_jwe, unverified_header

    for call in (is_jwe, unverified_header):
        with contextlib.suppress(IDTokenError):
            call(header)
