"""The sans-I/O core: build requests, parse responses, map errors (RFC 6749, 7009, 7662, 8707).

Nothing here does I/O or reads a clock: ``now`` is an argument. The managers in ``_async``
(and the generated ``_sync``) send what these functions build and feed back what they receive.

Rules stated once here:

Token requests (RFC 6749 §4.4 client credentials, §6 refresh): ``POST`` form-encoded to the
token endpoint with ``Accept: application/json``; ``scope`` is sent only when scopes were
requested (on refresh it narrows the grant); ``resource`` (RFC 8707) when one was asked for.

Token responses (§5.1), liberal in what real servers send:

- ``access_token``: a non-empty string of printable ASCII (VSCHAR, §A.12), required.
- ``token_type``: required, compared case-insensitively; ``bearer`` in any case becomes
  ``Bearer``; ``DPoP`` is kept as ``DPoP``; any other type is rejected (we cannot use it).
- ``expires_in``: optional; a number or a numeric string; must be finite, > 0 and at most ten
  years. Absent means unknown (the manager then asks introspection or uses its default).
- ``scope``: optional; a space-delimited string (a JSON list of strings is tolerated); absent
  means the requested scope (§5.1), or unknown when none was requested.
- ``refresh_token`` (printable ASCII, §A.17), ``id_token``: optional strings.
- The body must be one strict JSON object (the rules of ``_json``: UTF-8, no duplicate
  keys, no NaN or Infinity, ...); anything else is ``InvalidResponseError``.

Error responses (§5.2): a JSON object with a string ``error`` becomes the matching
``OAuth2Error`` subclass carrying ``error_description``, ``error_uri`` and the HTTP status;
any other non-2xx response becomes ``HTTPStatusError`` (status, content type, length; the body
itself is never quoted, since it may echo a credential). The error body is read by the same
strict reader: one that is not strict JSON (duplicate ``error`` keys, NaN, not UTF-8...) is
not trusted as an OAuth 2.0 error and becomes ``HTTPStatusError`` too.

Introspection (RFC 7662): ``POST token=…&token_type_hint=…`` with client authentication; the
answer must be a JSON object with a boolean ``active`` (``"true"``/``"false"`` tolerated);
``exp``, ``iat``, ``nbf`` numbers (or numeric strings), ``scope`` a string.

Revocation (RFC 7009): ``POST token=…&token_type_hint=…``; any 2xx is success (§2.2: the
server answers 200 also for tokens it does not know); ``503`` and other errors are raised.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import httpx

from ._client_auth import ClientConfig, authenticate
from ._exceptions import HTTPStatusError, InvalidResponseError, OAuth2Error, oauth2_error_for
from ._http_types import RawResponse
from ._json import JSONDocumentError, describe, loads_object
from ._scopes import parse_scope, scope_string

__all__ = [
    "IntrospectionResult",
    "TokenResponse",
    "build_form_request",
    "check_revocation_response",
    "client_credentials_form",
    "error_from_response",
    "introspection_form",
    "parse_introspection_response",
    "parse_json_object",
    "parse_token_response",
    "refresh_form",
    "revocation_form",
]

TokenTypeHint = Literal["access_token", "refresh_token"]
MAX_EXPIRES_IN = 10 * 365 * 24 * 3600
_KNOWN_TOKEN_TYPES = {"bearer": "Bearer", "dpop": "DPoP"}
_VSCHARS = re.compile(r"[\x20-\x7e]+")  # RFC 6749 §A.12/A.17: tokens must fit in a header


# --- requests -------------------------------------------------------------------------------


def client_credentials_form(
    scopes: Iterable[str] | None, resource: str | None = None
) -> dict[str, str]:
    """Form of a client-credentials grant (RFC 6749 §4.4.2)."""
    form = {"grant_type": "client_credentials"}
    if scopes:
        form["scope"] = scope_string(scopes)
    if resource:
        form["resource"] = resource
    return form


def refresh_form(
    refresh_token: str, scopes: Iterable[str] | None, resource: str | None = None
) -> dict[str, str]:
    """Form of a refresh-token grant (RFC 6749 §6); ``scope`` narrows the grant."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scopes:
        form["scope"] = scope_string(scopes)
    if resource:
        form["resource"] = resource
    return form


def introspection_form(token: str, hint: TokenTypeHint | None) -> dict[str, str]:
    """Form of an introspection request (RFC 7662 §2.1)."""
    form = {"token": token}
    if hint:
        form["token_type_hint"] = hint
    return form


def revocation_form(token: str, hint: TokenTypeHint | None) -> dict[str, str]:
    """Form of a revocation request (RFC 7009 §2.1)."""
    return introspection_form(token, hint)


def build_form_request(
    client: ClientConfig,
    url: str,
    form: dict[str, str],
    *,
    token_endpoint: str,
    issuer: str,
    now: float,
) -> httpx.Request:
    """A client-authenticated ``POST`` of ``form`` to ``url`` (the same method everywhere)."""
    headers = {"Accept": "application/json"}
    form = dict(form)
    authenticate(client, form, headers, token_endpoint=token_endpoint, issuer=issuer, now=now)
    return httpx.Request("POST", url, data=form, headers=headers)


# --- responses ------------------------------------------------------------------------------


def parse_json_object(raw: RawResponse, what: str) -> dict[str, Any]:
    """The body as one strict JSON object (``_json``), or ``InvalidResponseError`` saying why."""
    try:
        return loads_object(raw.content)
    except JSONDocumentError as exc:
        raise InvalidResponseError(
            f"{what} from {raw.url} is {exc} "
            f"({describe(raw.content, raw.content_type, raw.status_code)})",
            endpoint=raw.url,
            status_code=raw.status_code,
        ) from None


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{name} must be a string, not {type(value).__name__}")


def error_from_response(raw: RawResponse) -> OAuth2Error | HTTPStatusError:
    """The typed error for a failed response: the server's words when it gave any.

    Only a strict JSON object (``_json``) with a non-empty string ``error`` is an OAuth 2.0
    error; anything else, including an ambiguous error body, is an ``HTTPStatusError``.
    """
    refused = ""
    try:
        data: dict[str, Any] | None = loads_object(raw.content)
    except JSONDocumentError as exc:
        data = None
        if not exc.malformed and exc.kind != "not_object":  # JSON-like, but not trusted
            refused = f"; the body is {exc}, not trusted as an OAuth 2.0 error"
    if data is not None and isinstance(data.get("error"), str) and data["error"]:
        description = data.get("error_description")
        uri = data.get("error_uri")
        return oauth2_error_for(data["error"])(
            data["error"],
            description if isinstance(description, str) else None,
            uri if isinstance(uri, str) else None,
            endpoint=raw.url,
            status_code=raw.status_code,
            retry_after=raw.headers.get("retry-after"),
        )
    return HTTPStatusError(
        f"unexpected response from {raw.url}: "
        f"{describe(raw.content, raw.content_type, raw.status_code)}{refused}",
        endpoint=raw.url,
        status_code=raw.status_code,
        retry_after=raw.headers.get("retry-after"),
    )


def parse_number(value: Any, name: str) -> float:
    """A JSON number or numeric string as a finite float (``TypeError``/``ValueError``)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, not a boolean")
    if isinstance(value, str):
        value = float(value.strip())
    elif not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        raise ValueError(f"{name} must be finite") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite")
    return number


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class TokenResponse:
    """A successful token response (RFC 6749 §5.1), validated. ``repr`` hides the tokens."""

    access_token: str
    token_type: str
    expires_in: float | None
    scopes: frozenset[str] | None
    refresh_token: str | None
    id_token: str | None
    extra: Mapping[str, Any]

    def __repr__(self) -> str:
        return (
            f"TokenResponse(token_type={self.token_type!r}, expires_in={self.expires_in!r}, "
            f"scopes={sorted(self.scopes) if self.scopes is not None else None!r}, "
            f"refresh_token={'yes' if self.refresh_token else 'no'})"
        )


_TOKEN_FIELDS = {"access_token", "token_type", "expires_in", "scope", "refresh_token", "id_token"}


def parse_token_response(
    raw: RawResponse, requested_scopes: frozenset[str] | None
) -> TokenResponse:
    """Validate a token endpoint response; raise the typed error for anything unusable."""
    if not 200 <= raw.status_code < 300:
        raise error_from_response(raw)
    data = parse_json_object(raw, "token response")
    if "access_token" not in data and isinstance(data.get("error"), str):
        raise error_from_response(raw)

    def bad(problem: str) -> InvalidResponseError:
        return InvalidResponseError(
            f"token response from {raw.url} {problem}",
            endpoint=raw.url,
            status_code=raw.status_code,
        )

    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise bad("has no access_token" if access is None else "has an ill-typed access_token")
    if not _VSCHARS.fullmatch(access):
        raise bad("has an access_token with characters other than printable ASCII")
    token_type = data.get("token_type")
    if not isinstance(token_type, str) or not token_type:
        raise bad("has no token_type")
    normalised = _KNOWN_TOKEN_TYPES.get(token_type.lower())
    if normalised is None:
        raise bad(f"has an unsupported token_type {token_type[:40]!r}")
    expires_in: float | None = None
    if data.get("expires_in") is not None:
        try:
            expires_in = parse_number(data["expires_in"], "expires_in")
        except (TypeError, ValueError) as exc:
            raise bad(f"has an invalid expires_in: {exc}") from None
        if not 0 < expires_in <= MAX_EXPIRES_IN:
            raise bad(f"has an out-of-range expires_in ({expires_in:g} s)")
    scopes = requested_scopes
    if data.get("scope") is not None:
        try:
            scopes = parse_scope(data["scope"])
        except (TypeError, ValueError) as exc:
            raise bad(f"has an invalid scope: {exc}") from None
    try:
        refresh = _optional_str(data, "refresh_token") or None
        id_token = _optional_str(data, "id_token") or None
    except TypeError as exc:
        raise bad(f"is ill-typed: {exc}") from None
    if refresh is not None and not _VSCHARS.fullmatch(refresh):
        raise bad("has a refresh_token with characters other than printable ASCII")
    extra = {k: v for k, v in data.items() if k not in _TOKEN_FIELDS}
    return TokenResponse(access, normalised, expires_in, scopes, refresh, id_token, extra)


@dataclasses.dataclass(frozen=True, slots=True)
class IntrospectionResult:
    """An RFC 7662 introspection answer. ``raw`` holds every field the server sent."""

    active: bool
    scopes: frozenset[str] | None = None
    client_id: str | None = None
    username: str | None = None
    token_type: str | None = None
    exp: float | None = None
    iat: float | None = None
    nbf: float | None = None
    sub: str | None = None
    aud: tuple[str, ...] = ()
    iss: str | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> IntrospectionResult:
        """Validate fields of an introspection object (``TypeError``/``ValueError``)."""
        active = data.get("active")
        if isinstance(active, str) and active.lower() in ("true", "false"):
            active = active.lower() == "true"
        if not isinstance(active, bool):
            raise TypeError("active must be a boolean")
        numbers: dict[str, float | None] = {}
        for name in ("exp", "iat", "nbf"):
            value = data.get(name)
            numbers[name] = None if value is None else parse_number(value, name)
        scope = data.get("scope")
        aud = data.get("aud")
        if isinstance(aud, str):
            audience: tuple[str, ...] = (aud,)
        elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
            audience = tuple(aud)
        elif aud is None:
            audience = ()
        else:
            raise TypeError("aud must be a string or a list of strings")
        return cls(
            active=active,
            scopes=parse_scope(scope) if scope is not None else None,
            client_id=_optional_str(data, "client_id"),
            username=_optional_str(data, "username"),
            token_type=_optional_str(data, "token_type"),
            exp=numbers["exp"],
            iat=numbers["iat"],
            nbf=numbers["nbf"],
            sub=_optional_str(data, "sub"),
            aud=audience,
            iss=_optional_str(data, "iss"),
            raw=dict(data),
        )


def parse_introspection_response(raw: RawResponse) -> IntrospectionResult:
    """Validate an introspection response; typed errors for anything unusable."""
    if not 200 <= raw.status_code < 300:
        raise error_from_response(raw)
    data = parse_json_object(raw, "introspection response")
    try:
        return IntrospectionResult.from_mapping(data)
    except (TypeError, ValueError) as exc:
        raise InvalidResponseError(
            f"introspection response from {raw.url} is invalid: {exc}",
            endpoint=raw.url,
            status_code=raw.status_code,
        ) from None


def check_revocation_response(raw: RawResponse) -> None:
    """Raise the typed error unless the revocation succeeded (any 2xx, RFC 7009 §2.2)."""
    if not 200 <= raw.status_code < 300:
        raise error_from_response(raw)
