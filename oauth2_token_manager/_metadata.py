"""Authorization server metadata (RFC 8414, OpenID Connect Discovery 1.0): the pure rules.

Nothing here does I/O or reads a clock (``now`` is an argument); ``_async/_discovery.py`` (and
its generated sync twin) fetches the documents and feeds them to these functions.

Where the document is looked for (:func:`well_known_urls`), most likely location first:

- issuer without a path, ``https://h``::

      https://h/.well-known/openid-configuration
      https://h/.well-known/oauth-authorization-server

- issuer with a path, ``https://h/tenant``::

      https://h/tenant/.well-known/openid-configuration      (OpenID Discovery §4, appended)
      https://h/.well-known/oauth-authorization-server/tenant (RFC 8414 §3.1, inserted)
      https://h/.well-known/openid-configuration/tenant       (RFC 8414 §5, inserted)

  A terminating ``/`` of the issuer is removed before building them (RFC 8414 §3.1, OpenID
  Discovery §4.1). RFC 8414 §5 suggests trying its inserted form first during the transition;
  we try OpenID's location first because nearly every deployed server (Keycloak, Entra ID,
  Okta, Auth0, Google, oidc-provider...) publishes it and its document is a superset (it also
  has ``userinfo_endpoint`` and ``jwks_uri``), so the common case costs one request and never
  meets odd answers at URLs the server does not serve. RFC 8414-only servers are found by
  the next URL. The order only decides which request comes first: whichever document is
  accepted must pass the same issuer check.

Moving on to the next URL (:func:`document_absent`): a 3xx (redirects are not followed), a
4xx other than 408 and 429 (404, 400, 405, but also 401/403 from gateways guarding unknown
paths), and a 2xx body that is not a JSON object (an HTML page from a catch-all route). Any
other failure stops the search and is reported: a transport error, a 5xx, 408 or 429 (server
trouble, retried later), an oversized body, and a real document that fails validation (an
issuer mismatch or an insecure endpoint is never skipped in favour of another document).

Content type: the body is accepted when it parses as one JSON object, whatever its
``Content-Type`` (``application/json`` with or without parameters, but also ``text/plain`` or
``application/octet-stream`` as static file hosting serves an extension-less file). The label
is only quoted in error messages; authenticity comes from TLS and the issuer check, not from
the label. The JSON is read by the strict reader (``_json``: UTF-8, no duplicate keys, no
NaN or Infinity, ...); a body that is not JSON at all, or JSON but not an object, means no
document here, while refused JSON (duplicate keys, NaN, too deep) is an invalid document.

Issuer check (RFC 8414 §3.3, OpenID Discovery §4.3): the document's ``issuer`` must be
identical to the configured issuer, except that one trailing ``/`` on either side is ignored
(``https://h`` matches ``https://h/``). Both spellings lead to the very same well-known URLs,
so the tolerance cannot make a document from any other location acceptable; it only spares
users of servers such as Auth0 (whose issuer ends in ``/``) a configuration error. Nothing
else is normalised (case, default port, percent-encoding). ``ServerMetadata.issuer`` is the
server's own spelling, which is what ``iss`` claims and RFC 9207 ``iss`` parameters carry.

Endpoint URLs: the issuer, every ``*_endpoint`` field, ``jwks_uri`` and the values of
``mtls_endpoint_aliases`` must pass :func:`check_url`: ``https``, or ``http`` to a loopback
host (127.0.0.0/8, ::1, ``localhost``) when ``allow_insecure_loopback`` is set. Known fields
must have their RFC types (strings, lists of strings); an ill-typed one makes the document
invalid. Other fields are kept as sent (lists become tuples, objects read-only mappings).

Overrides: a per-field map from the configuration; each value replaces the discovered one
(or adds a missing field) after the issuer check and is checked like a discovered endpoint.
``issuer`` cannot be overridden. With discovery disabled the document is the issuer plus the
overrides (:func:`metadata_from_overrides`).

Cache policy (:class:`MetadataCacheState`): a document is fresh for ``max_age`` (3600 s)
after it was fetched; a stale or missing one is fetched again, but not within
``retry_after_failure`` (10 s) of the last failure. A failed refresh keeps the last good
document in use; without one, the last error is raised again (never a "not found"). A clock
that went backwards makes a document stale and ends a failure's back-off.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import types
from collections.abc import Iterator, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from ._exceptions import (
    ConfigurationError,
    HTTPStatusError,
    InsecureEndpointError,
    InvalidResponseError,
    IssuerMismatchError,
    MetadataError,
    MissingEndpointError,
)
from ._http_types import safe_url
from ._json import JSONDocumentError, describe, loads_object

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_RETRY_AFTER_FAILURE",
    "MetadataCacheState",
    "NotJSONObjectError",
    "ServerMetadata",
    "check_issuer",
    "check_overrides",
    "check_url",
    "document_absent",
    "metadata_from_overrides",
    "parse_metadata",
    "well_known_urls",
]

DEFAULT_MAX_AGE: Final = 3600.0
DEFAULT_RETRY_AFTER_FAILURE: Final = 10.0

OPENID_SUFFIX: Final = "openid-configuration"
OAUTH_SUFFIX: Final = "oauth-authorization-server"

_LOOPBACK_V4: Final = ipaddress.ip_network("127.0.0.0/8")
_LOOPBACK_V6: Final = ipaddress.ip_address("::1")

# Fields whose value must be a string when present (besides every "*_endpoint" field).
_STRING_FIELDS: Final = frozenset(
    {"issuer", "jwks_uri", "service_documentation", "op_policy_uri", "op_tos_uri"}
)
# Fields whose value must be a list of strings when present.
_STRING_LIST_FIELDS: Final = frozenset(
    {
        "scopes_supported",
        "response_types_supported",
        "response_modes_supported",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
        "token_endpoint_auth_signing_alg_values_supported",
        "revocation_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_signing_alg_values_supported",
        "introspection_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_signing_alg_values_supported",
        "code_challenge_methods_supported",
        "dpop_signing_alg_values_supported",
    }
)
_BOOL_FIELDS: Final = frozenset(
    {
        "authorization_response_iss_parameter_supported",
        "tls_client_certificate_bound_access_tokens",
    }
)

_NON_STRING_FIELDS: Final = _STRING_LIST_FIELDS | _BOOL_FIELDS | {"mtls_endpoint_aliases"}


class NotJSONObjectError(InvalidResponseError):
    """The body at a well-known URL is not a JSON object: no metadata document lives there."""


# --- URLs -----------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in _LOOPBACK_V4
    return address == _LOOPBACK_V6


def check_url(url: str, *, allow_insecure_loopback: bool) -> None:
    """Raise ``InsecureEndpointError`` unless ``url`` is an absolute ``https`` URL.

    Plain ``http`` is accepted only for a loopback host (127.0.0.0/8, ``::1``, ``localhost``)
    and only when ``allow_insecure_loopback`` is true. The URL must also be one httpx can
    request (no control characters, a valid IDNA host...).
    """
    shown = safe_url(url)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - validates the port
        httpx.URL(url).host  # noqa: B018 - as a request does: parses, decodes IDNA
    except (ValueError, httpx.InvalidURL) as exc:  # idna.IDNAError is a ValueError
        raise InsecureEndpointError(f"{shown} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if not host:
        raise InsecureEndpointError(f"{shown!r} is not an absolute URL with a host")
    if scheme == "https":
        return
    if scheme == "http" and _is_loopback(host):
        if allow_insecure_loopback:
            return
        raise InsecureEndpointError(
            f"{shown} uses plain http; set allow_insecure_loopback=True to allow it for a "
            "loopback host"
        )
    raise InsecureEndpointError(f"{shown} is not an https URL")


def _issuer_parts(issuer: str) -> tuple[str, str]:
    """``(scheme://netloc, path without terminating slashes)`` of a well-formed issuer."""
    try:
        parts = urlsplit(issuer)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigurationError(f"issuer {safe_url(issuer)} is not a valid URL ({exc})") from None
    if not parts.scheme or not parts.hostname:
        raise ConfigurationError(f"issuer {issuer!r} is not an absolute URL")
    if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
        raise ConfigurationError(
            f"issuer {safe_url(issuer)} must not have a query or fragment (RFC 8414 §2)"
        )
    if "@" in parts.netloc:
        raise ConfigurationError(f"issuer {safe_url(issuer)} must not contain credentials")
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")


def check_issuer(issuer: str, *, allow_insecure_loopback: bool) -> None:
    """Raise ``ConfigurationError`` unless ``issuer`` is a usable issuer identifier.

    It must pass :func:`check_url` and have no query, fragment or user info (RFC 8414 §2).
    """
    _issuer_parts(issuer)
    check_url(issuer, allow_insecure_loopback=allow_insecure_loopback)


def well_known_urls(issuer: str) -> list[str]:
    """The metadata URLs of ``issuer``, in the order they are tried (see the module doc)."""
    base, path = _issuer_parts(issuer)
    if not path:
        return [f"{base}/.well-known/{OPENID_SUFFIX}", f"{base}/.well-known/{OAUTH_SUFFIX}"]
    return [
        f"{base}{path}/.well-known/{OPENID_SUFFIX}",
        f"{base}/.well-known/{OAUTH_SUFFIX}{path}",
        f"{base}/.well-known/{OPENID_SUFFIX}{path}",
    ]


def _same_issuer(configured: str, stated: str) -> bool:
    return configured.removesuffix("/") == stated.removesuffix("/")


# --- the document ---------------------------------------------------------------------------


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return types.MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


class ServerMetadata(Mapping[str, Any]):
    """A validated metadata document: a read-only mapping with typed properties.

    Lists in the document are tuples here and nested objects read-only mappings. Build one
    with :func:`parse_metadata` or :func:`metadata_from_overrides`. ``source`` is the URL the
    document came from (``None`` when it was configured).
    """

    __slots__ = ("_data", "_source")

    _data: Mapping[str, Any]
    _source: str | None

    def __init__(self, document: Mapping[str, Any], *, source: str | None = None) -> None:
        issuer = document.get("issuer")
        if not isinstance(issuer, str) or not issuer:
            raise ValueError("a metadata document needs a non-empty string issuer")
        object.__setattr__(self, "_data", _freeze(document))
        object.__setattr__(self, "_source", source)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return (
            f"ServerMetadata(issuer={self.issuer!r}, source={self._source!r}, "
            f"fields={sorted(self._data)!r})"
        )

    @property
    def source(self) -> str | None:
        """The URL the document was fetched from; ``None`` for configured metadata."""
        return self._source

    def _string(self, field: str) -> str | None:
        value = self._data.get(field)
        return value if isinstance(value, str) and value else None

    def _strings(self, field: str) -> tuple[str, ...] | None:
        value = self._data.get(field)
        return value if isinstance(value, tuple) else None

    def endpoint(self, field: str) -> str:
        """The URL in ``field`` (e.g. ``"token_endpoint"``), or ``MissingEndpointError``."""
        value = self._string(field)
        if value is None:
            raise MissingEndpointError(field, self.issuer)
        return value

    @property
    def issuer(self) -> str:
        """The issuer identifier, spelled as the server states it."""
        value = self._data["issuer"]
        assert isinstance(value, str)
        return value

    @property
    def authorization_endpoint(self) -> str | None:
        """RFC 8414 ``authorization_endpoint``."""
        return self._string("authorization_endpoint")

    @property
    def token_endpoint(self) -> str | None:
        """RFC 8414 ``token_endpoint``."""
        return self._string("token_endpoint")

    @property
    def introspection_endpoint(self) -> str | None:
        """RFC 8414 / RFC 7662 ``introspection_endpoint``."""
        return self._string("introspection_endpoint")

    @property
    def revocation_endpoint(self) -> str | None:
        """RFC 8414 / RFC 7009 ``revocation_endpoint``."""
        return self._string("revocation_endpoint")

    @property
    def userinfo_endpoint(self) -> str | None:
        """OpenID Connect ``userinfo_endpoint``."""
        return self._string("userinfo_endpoint")

    @property
    def device_authorization_endpoint(self) -> str | None:
        """RFC 8628 ``device_authorization_endpoint``."""
        return self._string("device_authorization_endpoint")

    @property
    def pushed_authorization_request_endpoint(self) -> str | None:
        """RFC 9126 ``pushed_authorization_request_endpoint``."""
        return self._string("pushed_authorization_request_endpoint")

    @property
    def registration_endpoint(self) -> str | None:
        """RFC 7591 ``registration_endpoint``."""
        return self._string("registration_endpoint")

    @property
    def end_session_endpoint(self) -> str | None:
        """OpenID RP-Initiated Logout ``end_session_endpoint``."""
        return self._string("end_session_endpoint")

    @property
    def jwks_uri(self) -> str | None:
        """RFC 8414 ``jwks_uri``."""
        return self._string("jwks_uri")

    @property
    def scopes_supported(self) -> tuple[str, ...] | None:
        """``scopes_supported``; ``None`` when the server does not say."""
        return self._strings("scopes_supported")

    @property
    def grant_types_supported(self) -> tuple[str, ...]:
        """``grant_types_supported``; RFC 8414 default ``authorization_code``, ``implicit``."""
        return self._strings("grant_types_supported") or ("authorization_code", "implicit")

    @property
    def token_endpoint_auth_methods_supported(self) -> tuple[str, ...]:
        """``token_endpoint_auth_methods_supported``; RFC 8414 default ``client_secret_basic``."""
        return self._strings("token_endpoint_auth_methods_supported") or ("client_secret_basic",)

    @property
    def revocation_endpoint_auth_methods_supported(self) -> tuple[str, ...]:
        """``revocation_endpoint_auth_methods_supported``; default ``client_secret_basic``."""
        stated = self._strings("revocation_endpoint_auth_methods_supported")
        return stated or ("client_secret_basic",)

    @property
    def introspection_endpoint_auth_methods_supported(self) -> tuple[str, ...] | None:
        """``introspection_endpoint_auth_methods_supported``; ``None`` when unstated."""
        return self._strings("introspection_endpoint_auth_methods_supported")

    @property
    def code_challenge_methods_supported(self) -> tuple[str, ...] | None:
        """``code_challenge_methods_supported`` (PKCE); ``None`` when unstated."""
        return self._strings("code_challenge_methods_supported")

    @property
    def authorization_response_iss_parameter_supported(self) -> bool:
        """RFC 9207: the authorization response carries ``iss`` (default false)."""
        return self._data.get("authorization_response_iss_parameter_supported") is True


def _is_url_field(field: str) -> bool:
    return field.endswith("_endpoint") or field == "jwks_uri"


def _check_field_url(field: str, value: str, *, allow_insecure_loopback: bool, where: str) -> None:
    try:
        check_url(value, allow_insecure_loopback=allow_insecure_loopback)
    except InsecureEndpointError as exc:
        raise InsecureEndpointError(f"{field} {where}: {exc}") from None


def check_overrides(overrides: Mapping[str, str], *, allow_insecure_loopback: bool) -> None:
    """Raise ``ConfigurationError`` for an unusable override map.

    Values must be strings, ``issuer`` cannot be overridden, and endpoint URLs must pass
    :func:`check_url` (``InsecureEndpointError``).
    """
    for field, value in overrides.items():
        if field == "issuer":
            raise ConfigurationError("the issuer cannot be overridden by metadata overrides")
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"metadata override {field!r} must be a non-empty string")
        if field in _NON_STRING_FIELDS:
            raise ConfigurationError(f"metadata override {field!r}: only string fields can be set")
        if _is_url_field(field):
            _check_field_url(
                field, value, allow_insecure_loopback=allow_insecure_loopback, where="(override)"
            )


def _type_problem(field: str, value: Any) -> str | None:
    if field in _STRING_FIELDS or field.endswith("_endpoint"):
        if not isinstance(value, str) or not value:
            return f"{field} must be a non-empty string"
    elif field in _STRING_LIST_FIELDS:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return f"{field} must be a list of strings"
    elif field in _BOOL_FIELDS:
        if not isinstance(value, bool):
            return f"{field} must be a boolean"
    elif field == "mtls_endpoint_aliases" and (
        not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())
    ):
        return f"{field} must be an object of URL strings"
    return None


def _decode(body: bytes, content_type: str | None, url: str, status: int) -> dict[str, Any]:
    """The strict JSON object (``_json``): not JSON or not an object means "no document here"
    (``NotJSONObjectError``); refused JSON (duplicate keys, NaN, too deep...) is invalid."""
    try:
        return loads_object(body)
    except JSONDocumentError as exc:
        if exc.malformed or exc.kind == "not_object":
            raise NotJSONObjectError(
                f"metadata at {url} is {exc} ({describe(body, content_type, status)})",
                endpoint=url,
                status_code=status,
            ) from None
        raise InvalidResponseError(
            f"metadata at {url} is {exc}", endpoint=url, status_code=status
        ) from None


def parse_metadata(
    body: bytes,
    content_type: str | None,
    status: int,
    expected_issuer: str,
    url: str,
    *,
    overrides: Mapping[str, str],
    allow_insecure_loopback: bool,
) -> ServerMetadata:
    """Validate the response of a well-known URL into ``ServerMetadata`` (module doc rules).

    Raises ``HTTPStatusError`` (non-2xx), ``NotJSONObjectError`` (not a JSON object),
    ``InvalidResponseError`` (ambiguous JSON, missing or ill-typed fields),
    ``IssuerMismatchError`` and ``InsecureEndpointError``.
    """
    url = safe_url(url)
    check_overrides(overrides, allow_insecure_loopback=allow_insecure_loopback)
    if not 200 <= status < 300:
        raise HTTPStatusError(
            f"metadata request to {url} returned HTTP {status} ({describe(body, content_type)})",
            endpoint=url,
            status_code=status,
        )
    data = _decode(body, content_type, url, status)

    def invalid(problem: str) -> InvalidResponseError:
        return InvalidResponseError(
            f"metadata at {url} {problem}", endpoint=url, status_code=status
        )

    stated = data.get("issuer")
    if stated is None:
        raise invalid("has no issuer")
    if not isinstance(stated, str) or not stated:
        raise invalid("has an ill-typed issuer")
    if not _same_issuer(expected_issuer, stated):
        raise IssuerMismatchError(
            f"metadata at {url} is for issuer {stated[:200]!r}, not the configured "
            f"{expected_issuer!r} (RFC 8414 §3.3)"
        )
    for field, value in data.items():
        if field in overrides:
            continue  # replaced by a checked configuration value
        problem = _type_problem(field, value)
        if problem is not None:
            raise invalid(f"is invalid: {problem}")
        if _is_url_field(field) or field == "issuer":
            _check_field_url(
                field, value, allow_insecure_loopback=allow_insecure_loopback, where=f"at {url}"
            )
        elif field == "mtls_endpoint_aliases":
            for alias, alias_url in value.items():
                _check_field_url(
                    f"mtls_endpoint_aliases.{alias}",
                    alias_url,
                    allow_insecure_loopback=allow_insecure_loopback,
                    where=f"at {url}",
                )
    return ServerMetadata({**data, **overrides}, source=url)


def metadata_from_overrides(
    issuer: str, overrides: Mapping[str, str] | None, *, allow_insecure_loopback: bool = False
) -> ServerMetadata:
    """The metadata of a server without discovery: ``issuer`` plus the configured fields."""
    overrides = overrides or {}
    check_issuer(issuer, allow_insecure_loopback=allow_insecure_loopback)
    check_overrides(overrides, allow_insecure_loopback=allow_insecure_loopback)
    return ServerMetadata({**overrides, "issuer": issuer})


def document_absent(error: Exception) -> bool:
    """True when ``error`` (from one well-known URL) means "no document here, try the next".

    That is a ``NotJSONObjectError``, or an ``HTTPStatusError`` with a 3xx or a 4xx status
    other than 408 and 429. Anything else must stop the search.
    """
    if isinstance(error, NotJSONObjectError):
        return True
    if isinstance(error, HTTPStatusError) and error.status_code is not None:
        status = error.status_code
        return 300 <= status < 400 or (400 <= status < 500 and status not in (408, 429))
    return False


# --- cache policy ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MetadataCacheState:
    """What the metadata cache knows at one moment; every transition returns a new state.

    ``document`` is the last good document (kept when a refresh fails), ``fetched_at`` when it
    was fetched, ``last_failure_at``/``last_error`` the most recent failed fetch since then.
    ``expired`` is set by :meth:`invalidate`.
    """

    document: ServerMetadata | None = None
    fetched_at: float | None = None
    last_failure_at: float | None = None
    last_error: Exception | None = None
    max_age: float = DEFAULT_MAX_AGE
    retry_after_failure: float = DEFAULT_RETRY_AFTER_FAILURE
    expired: bool = False

    def __post_init__(self) -> None:
        if self.max_age < 0 or self.retry_after_failure < 0:
            raise ConfigurationError("max_age and retry_after_failure must be >= 0")

    def is_fresh(self, now: float) -> bool:
        """A document exists, was not invalidated, and is younger than ``max_age``."""
        if self.document is None or self.fetched_at is None or self.expired:
            return False
        return 0 <= now - self.fetched_at < self.max_age

    def backing_off(self, now: float) -> bool:
        """The last failure is less than ``retry_after_failure`` old."""
        if self.last_failure_at is None:
            return False
        return 0 <= now - self.last_failure_at < self.retry_after_failure

    def needs_fetch(self, now: float) -> bool:
        """The document is missing or stale, and no failure is being waited out."""
        return not self.is_fresh(now) and not self.backing_off(now)

    def on_success(self, document: ServerMetadata, now: float) -> MetadataCacheState:
        """A fetch succeeded: the new document, and no failure."""
        return dataclasses.replace(
            self,
            document=document,
            fetched_at=now,
            last_failure_at=None,
            last_error=None,
            expired=False,
        )

    def on_failure(self, error: Exception, now: float) -> MetadataCacheState:
        """A fetch failed: keep the last good document, remember the error and when."""
        return dataclasses.replace(self, last_failure_at=now, last_error=error)

    def invalidate(self) -> MetadataCacheState:
        """Make the document stale (still used if the next fetch fails; back-off still holds)."""
        return dataclasses.replace(self, expired=True)

    def current(self) -> ServerMetadata:
        """The last good document, even a stale one; else raise the last error."""
        if self.document is not None:
            return self.document
        if self.last_error is not None:
            # Raised afresh each time: drop the traceback of earlier raises so that repeated
            # calls do not chain frames onto the one stored exception.
            raise self.last_error.with_traceback(None)
        raise MetadataError("no metadata has been fetched yet")
