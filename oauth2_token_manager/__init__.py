"""oauth2_token_manager: hold the OAuth 2.0 tokens an API client needs.

Per-issuer ``AccessTokenManager`` and ``RefreshTokenManager`` (and their async twins) get,
register, introspect (RFC 7662), revoke (RFC 7009) and delete tokens against an authorization
server, over a pluggable local store (memory, disk).
"""

from __future__ import annotations

from ._async._auth import AsyncTokenAuth
from ._async._claims import AsyncClaimsManager
from ._async._manager import AsyncAccessTokenManager, AsyncIssuer, AsyncRefreshTokenManager
from ._client_auth import AuthMethod, ClientConfig
from ._config import ANY, IssuerOptions
from ._events import TokenEvent
from ._exceptions import (
    ConfigurationError,
    CorruptEntryError,
    DeadlineExceededError,
    HTTPStatusError,
    IDTokenError,
    InsecureEndpointError,
    InvalidArgumentError,
    InvalidClient,
    InvalidGrant,
    InvalidResponseError,
    InvalidScope,
    IssuerMismatchError,
    MetadataError,
    MissingEndpointError,
    OAuth2Error,
    OAuth2TokenManagerError,
    ResponseError,
    RevocationError,
    StoreError,
    TokenNotFoundError,
    TokenRevokedError,
    TransportError,
    UnauthorizedClient,
    UnsupportedAuthMethodError,
    UnsupportedGrantType,
    UserinfoError,
)
from ._metadata import ServerMetadata
from ._models import (
    AccessToken,
    GroupKey,
    IDToken,
    RefreshToken,
    Token,
    UserinfoRecord,
    short_hash,
    token_hash,
)
from ._protocol import IntrospectionResult, TokenResponse
from ._retry import RetryPolicy
from ._stores import (
    AsyncStoreAdapter,
    AsyncTokenStore,
    DiskStore,
    LockingTokenStore,
    MemoryStore,
    Page,
    TokenQuery,
    TokenStore,
)
from ._stores._crypto import generate_encryption_key
from ._sync._auth import TokenAuth
from ._sync._claims import ClaimsManager
from ._sync._manager import AccessTokenManager, Issuer, RefreshTokenManager

__version__ = "0.1.0.dev0"

__all__ = [
    "ANY",
    "AccessToken",
    "AccessTokenManager",
    "AsyncAccessTokenManager",
    "AsyncClaimsManager",
    "AsyncIssuer",
    "AsyncRefreshTokenManager",
    "AsyncStoreAdapter",
    "AsyncTokenAuth",
    "AsyncTokenStore",
    "AuthMethod",
    "ClaimsManager",
    "ClientConfig",
    "ConfigurationError",
    "CorruptEntryError",
    "DeadlineExceededError",
    "DiskStore",
    "GroupKey",
    "HTTPStatusError",
    "IDToken",
    "IDTokenError",
    "InsecureEndpointError",
    "IntrospectionResult",
    "InvalidArgumentError",
    "InvalidClient",
    "InvalidGrant",
    "InvalidResponseError",
    "InvalidScope",
    "Issuer",
    "IssuerMismatchError",
    "IssuerOptions",
    "LockingTokenStore",
    "MemoryStore",
    "MetadataError",
    "MissingEndpointError",
    "OAuth2Error",
    "OAuth2TokenManagerError",
    "Page",
    "RefreshToken",
    "RefreshTokenManager",
    "ResponseError",
    "RetryPolicy",
    "RevocationError",
    "ServerMetadata",
    "StoreError",
    "Token",
    "TokenAuth",
    "TokenEvent",
    "TokenNotFoundError",
    "TokenQuery",
    "TokenResponse",
    "TokenRevokedError",
    "TokenStore",
    "TransportError",
    "UnauthorizedClient",
    "UnsupportedAuthMethodError",
    "UnsupportedGrantType",
    "UserinfoError",
    "UserinfoRecord",
    "generate_encryption_key",
    "short_hash",
    "token_hash",
]

_OPTIONAL = {
    "RedisStore": ("._stores._redis", "RedisStore"),
    "AsyncRedisStore": ("._stores._async_redis", "AsyncRedisStore"),
}


def __getattr__(name: str) -> object:
    """``RedisStore`` and ``AsyncRedisStore`` load redis-py only when asked for (the
    ``oauth2_token_manager[redis]`` extra)."""
    if name in _OPTIONAL:
        import importlib

        module, attribute = _OPTIONAL[name]
        value = getattr(importlib.import_module(module, __name__), attribute)
        value.__module__ = __name__
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Show public names as ``oauth2_token_manager.X`` in reprs and docs (as httpx does).
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("oauth2_token_manager."):
        _obj.__module__ = "oauth2_token_manager"
del _name, _obj
