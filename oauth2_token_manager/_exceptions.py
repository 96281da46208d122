"""The typed errors of oauth2_token_manager.

Every error the library raises on purpose is an ``OAuth2TokenManagerError``. Messages never
contain a token value or a client secret: tokens are named by a short SHA-256 prefix.

    OAuth2TokenManagerError
    ├── InvalidArgumentError          an argument is unusable (also a ValueError), checked
    │                                 before any request is sent
    ├── ConfigurationError            the client or issuer settings are unusable
    │   ├── InsecureEndpointError     an endpoint is not HTTPS (and not an allowed loopback)
    │   └── UnsupportedAuthMethodError
    ├── MetadataError                 server metadata could not be obtained or is invalid
    │   ├── IssuerMismatchError       the document's ``issuer`` differs from the configured one
    │   └── MissingEndpointError      the endpoint an operation needs is not known
    ├── TransportError                the request did not complete (connect, timeout, ...)
    │   └── DeadlineExceededError     the operation's deadline passed (also a TimeoutError)
    ├── ResponseError                 a response was received but cannot be used
    │   ├── HTTPStatusError           an unexpected status with no OAuth 2.0 error body
    │   ├── InvalidResponseError      malformed body: not JSON, missing or ill-typed field
    │   └── OAuth2Error               RFC 6749 §5.2 error: ``error``, ``error_description`` ...
    │       ├── InvalidGrant          the refresh token (or grant) is dead; it was removed
    │       ├── InvalidClient         client authentication failed
    │       ├── InvalidScope
    │       ├── UnauthorizedClient
    │       └── UnsupportedGrantType
    ├── IDTokenError                  an ID token failed validation (OpenID Connect Core §3.1.3.7)
    ├── UserinfoError                 a userinfo answer is unusable (type, signature, sub)
    ├── TokenNotFoundError            no usable token and no way to obtain one
    ├── TokenRevokedError             the token is on the local revocation list
    ├── RevocationError               ``delete`` removed the token locally, revocation failed
    └── StoreError                    the local store failed (I/O, corruption, wrong format)
        └── CorruptEntryError         a stored entry cannot be parsed (not damaged I/O or keys)
"""

from __future__ import annotations

import datetime
from typing import TypeVar

__all__ = [
    "ConfigurationError",
    "CorruptEntryError",
    "DeadlineExceededError",
    "HTTPStatusError",
    "IDTokenError",
    "InsecureEndpointError",
    "InvalidArgumentError",
    "InvalidClient",
    "InvalidGrant",
    "InvalidResponseError",
    "InvalidScope",
    "IssuerMismatchError",
    "MetadataError",
    "MissingEndpointError",
    "OAuth2Error",
    "OAuth2TokenManagerError",
    "ResponseError",
    "RevocationError",
    "StoreError",
    "TokenNotFoundError",
    "TokenRevokedError",
    "TransportError",
    "UnauthorizedClient",
    "UnsupportedAuthMethodError",
    "UnsupportedGrantType",
    "UserinfoError",
    "cached_outcome",
    "oauth2_error_for",
]

E = TypeVar("E", bound="OAuth2TokenManagerError")


class OAuth2TokenManagerError(Exception):
    """Base of every error raised by this library."""


class InvalidArgumentError(OAuth2TokenManagerError, ValueError):
    """An argument given to the library is unusable (a malformed scope, ...); raised before
    any request is sent or anything is stored."""


class ConfigurationError(OAuth2TokenManagerError, ValueError):
    """The client or issuer configuration cannot be used."""


class InsecureEndpointError(ConfigurationError):
    """An endpoint or issuer URL is not HTTPS and not an allowed loopback URL."""


class UnsupportedAuthMethodError(ConfigurationError):
    """The configured client authentication method is unknown or lacks its credentials."""


class MetadataError(OAuth2TokenManagerError):
    """Authorization server metadata could not be obtained or is invalid."""


class IssuerMismatchError(MetadataError):
    """The metadata document names another issuer than the configured one (RFC 8414 §3.3)."""


class MissingEndpointError(MetadataError):
    """The endpoint an operation needs is neither discovered nor configured."""

    def __init__(self, field: str, issuer: str) -> None:
        super().__init__(f"the authorization server {issuer} has no {field} (metadata field)")
        self.field = field
        self.issuer = issuer


class TransportError(OAuth2TokenManagerError):
    """The HTTP request did not complete: connection refused, reset, timeout..."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"request to {endpoint} failed: {reason}")
        self.endpoint = endpoint
        self.reason = reason


class DeadlineExceededError(TransportError, TimeoutError):
    """The operation's deadline (``deadline`` option or ``timeout=``) passed before the
    server answered: during a request, before a retry, or waiting for a lock another caller
    holds. Also a builtin ``TimeoutError``. ``waited_for`` says what was going on."""

    def __init__(self, waited_for: str, endpoint: str = "") -> None:
        reason = f"deadline exceeded {waited_for}"
        OAuth2TokenManagerError.__init__(self, f"{reason} ({endpoint})" if endpoint else reason)
        self.endpoint = endpoint
        self.reason = reason
        self.waited_for = waited_for


class ResponseError(OAuth2TokenManagerError):
    """A response arrived but cannot be used; carries the endpoint, HTTP status and the raw
    ``Retry-After`` header (when the server sent one)."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status_code: int | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status_code = status_code
        self.retry_after = retry_after


class HTTPStatusError(ResponseError):
    """An unexpected HTTP status without a usable OAuth 2.0 error body."""


class InvalidResponseError(ResponseError):
    """The body is malformed: not JSON, not an object, or a field is missing or ill-typed."""


class OAuth2Error(ResponseError):
    """An RFC 6749 §5.2 error response, with the server's own words."""

    def __init__(
        self,
        error: str,
        error_description: str | None = None,
        error_uri: str | None = None,
        *,
        endpoint: str = "",
        status_code: int | None = None,
        retry_after: str | None = None,
    ) -> None:
        message = error
        if error_description:
            message += f": {error_description}"
        if status_code is not None:
            message += f" (HTTP {status_code}"
            message += f" from {endpoint})" if endpoint else ")"
        super().__init__(
            message, endpoint=endpoint, status_code=status_code, retry_after=retry_after
        )
        self.error = error
        self.error_description = error_description
        self.error_uri = error_uri


class InvalidGrant(OAuth2Error):
    """``invalid_grant``: the refresh token is expired, revoked or reused; it was removed."""


class InvalidClient(OAuth2Error):
    """``invalid_client``: the server rejected the client authentication."""


class InvalidScope(OAuth2Error):
    """``invalid_scope``: the requested scope is unknown or exceeds the grant."""


class UnauthorizedClient(OAuth2Error):
    """``unauthorized_client``: the client may not use this grant type."""


class UnsupportedGrantType(OAuth2Error):
    """``unsupported_grant_type``."""


_OAUTH2_ERRORS: dict[str, type[OAuth2Error]] = {
    "invalid_grant": InvalidGrant,
    "invalid_client": InvalidClient,
    "invalid_scope": InvalidScope,
    "unauthorized_client": UnauthorizedClient,
    "unsupported_grant_type": UnsupportedGrantType,
}


def oauth2_error_for(error: str) -> type[OAuth2Error]:
    """The most specific ``OAuth2Error`` class for an RFC 6749 ``error`` code."""
    return _OAUTH2_ERRORS.get(error, OAuth2Error)


class IDTokenError(OAuth2TokenManagerError):
    """An ID token (or a JWT from the issuer) failed validation; nothing was stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid ID token: {reason}")
        self.reason = reason


class UserinfoError(OAuth2TokenManagerError):
    """A userinfo answer is unusable: content type, signature, encryption or ``sub``."""


class TokenNotFoundError(OAuth2TokenManagerError, LookupError):
    """No usable token is stored and none can be obtained (e.g. no refresh token)."""


class TokenRevokedError(OAuth2TokenManagerError):
    """The token was revoked (locally recorded) and is never handed out or stored again."""


class RevocationError(OAuth2TokenManagerError):
    """``delete`` removed a token locally but could not revoke it; ``cause`` says why."""

    def __init__(self, message: str, cause: OAuth2TokenManagerError) -> None:
        super().__init__(f"{message}: {cause}")
        self.cause = cause


class StoreError(OAuth2TokenManagerError):
    """The local token store failed or holds data it cannot read."""


def cached_outcome(error: E, failed_at: float) -> E:
    """A fresh error of ``error``'s type and fields (``error``, ``error_description``,
    ``status_code``, ``endpoint`` ...) saying it is the cached outcome of the token request
    that failed at ``failed_at`` (epoch seconds): the failure cache never re-raises one object
    (whose traceback and message belong to a request this caller did not send)."""
    fresh = type(error).__new__(type(error))
    fresh.__dict__.update(error.__dict__)
    when = datetime.datetime.fromtimestamp(failed_at, datetime.timezone.utc)
    fresh.args = (
        f"cached outcome of the token request that failed at "
        f"{when.strftime('%Y-%m-%d %H:%M:%S')} UTC (no request was sent): {error}",
    )
    fresh.__cause__ = error
    return fresh


class CorruptEntryError(StoreError):
    """A stored entry is not one the library writes: not JSON, nested too deeply, a number
    beyond the float range or not finite, a missing or ill-typed field. ``delete`` and
    ``expunge_expired`` remove such entries; a corrupt revocation entry reads as "revoked".
    (An entry encrypted with a key the store lacks is not corrupt: it is never removed.)"""
