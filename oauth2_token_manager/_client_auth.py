"""Client configuration and client authentication (RFC 6749 §2.3, RFC 7523, OIDC Core §9).

Rules stated once here:

- The method comes from the *client configuration*, never from server metadata.
- One method authenticates every request the client makes: token, introspection, revocation.
- ``client_secret_basic``: id and secret are each form-encoded (``application/x-www-form-
  urlencoded``) *before* joining them with ``:`` and base64-encoding (RFC 6749 §2.3.1). Many
  libraries skip this step and fail with secrets containing ``:``, ``+``, ``%`` or ``&``.
- ``client_secret_post``: ``client_id`` and ``client_secret`` in the form body.
- ``none``: ``client_id`` in the form body (public clients).
- ``client_secret_jwt`` (HMAC, default HS256) and ``private_key_jwt`` (default RS256, or the
  configured algorithm): a signed assertion with ``iss = sub = client_id``, ``aud`` (the token
  endpoint URL by default, or the issuer), ``iat = now``, ``exp = now + assertion_lifetime``
  (30 s) and a fresh random ``jti``, signed with authlib (joserfc). A new assertion per request:
  servers reject replays.
- Credentials are never pickled and never shown by ``repr``, nor anything derived from them
  (an unsalted hash of a weak secret is a dictionary attack away from it): ``<set>``.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
from collections.abc import Mapping
from typing import Any, Literal, get_args
from urllib.parse import quote_plus

from ._arguments import option
from ._exceptions import UnsupportedAuthMethodError

__all__ = ["AuthMethod", "ClientConfig", "authenticate"]

AuthMethod = Literal[
    "none", "client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"
]
_METHODS = frozenset(get_args(AuthMethod))
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_DEFAULT_ALG = {"client_secret_jwt": "HS256", "private_key_jwt": "RS256"}


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class ClientConfig:
    """How this application authenticates to the authorization server (RFC 7591 names).

    ``private_key`` is a JWK (a mapping) or a PEM string for ``private_key_jwt``.
    ``assertion_audience`` is ``"token_endpoint"`` (OIDC Core's choice, the default),
    ``"issuer"`` (RFC 7523bis), or a literal audience string.
    """

    client_id: str
    client_secret: str | None = None
    auth_method: AuthMethod = "client_secret_basic"
    signing_alg: str | None = None
    private_key: Mapping[str, Any] | str | None = None
    key_id: str | None = None
    assertion_lifetime: float = 30.0
    assertion_audience: str = "token_endpoint"
    extra_assertion_claims: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    id_token_signed_response_alg: str = "RS256"
    """The ID token signing algorithm this client accepts (RFC 7591 / OIDC Registration)."""
    userinfo_signed_response_alg: str | None = None
    """The algorithm of signed userinfo answers (``None``: userinfo is plain JSON)."""
    decryption_keys: Mapping[str, Any] | None = None
    """A private JWK Set decrypting JWE ID tokens and userinfo (``None``: none expected)."""

    def __post_init__(self) -> None:
        if not isinstance(self.client_id, str) or not self.client_id:
            raise UnsupportedAuthMethodError("client_id must be a non-empty string")
        if self.auth_method not in _METHODS:
            raise UnsupportedAuthMethodError(
                f"unsupported client authentication method {self.auth_method!r}; "
                f"use one of {sorted(_METHODS)}"
            )
        needs_secret = self.auth_method in ("client_secret_basic", "client_secret_post")
        if (needs_secret or self.auth_method == "client_secret_jwt") and not self.client_secret:
            raise UnsupportedAuthMethodError(f"{self.auth_method} needs a client_secret")
        if self.auth_method == "private_key_jwt" and not self.private_key:
            raise UnsupportedAuthMethodError("private_key_jwt needs a private_key")
        if self.client_secret is not None and not isinstance(self.client_secret, str):
            raise UnsupportedAuthMethodError("client_secret must be a string")
        option("assertion_lifetime", self.assertion_lifetime)
        if self.assertion_lifetime <= 0:
            raise UnsupportedAuthMethodError("assertion_lifetime must be positive")
        for name in ("id_token_signed_response_alg", "userinfo_signed_response_alg"):
            value = getattr(self, name)
            if isinstance(value, str) and value.lower() == "none":
                raise UnsupportedAuthMethodError(f"{name} 'none' is never accepted")

    @property
    def alg(self) -> str | None:
        """The JWT signing algorithm for the assertion methods."""
        return self.signing_alg or _DEFAULT_ALG.get(self.auth_method)

    def __repr__(self) -> str:
        parts = [f"client_id={self.client_id!r}", f"auth_method={self.auth_method!r}"]
        if self.client_secret:
            parts.append("client_secret=<set>")
        if self.private_key:
            parts.append("private_key=<set>")
        if self.decryption_keys:
            parts.append("decryption_keys=<set>")
        if self.alg:
            parts.append(f"alg={self.alg!r}")
        return f"ClientConfig({', '.join(parts)})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("ClientConfig holds credentials and is never pickled")


def _form_encode(value: str) -> str:
    return quote_plus(value, safe="")


def _sign_assertion(config: ClientConfig, *, audience: str, now: float, jti: str | None) -> str:
    # Imported here: authlib's JOSE stack costs ~50 ms to import and only JWT clients need it.
    from authlib.oauth2.rfc7523 import client_secret_jwt_sign, private_key_jwt_sign
    from joserfc.jwk import import_key

    header: dict[str, Any] = {}
    if config.key_id:
        header["kid"] = config.key_id
    claims: dict[str, Any] = dict(config.extra_assertion_claims)
    claims["jti"] = jti or secrets.token_urlsafe(24)
    issued = int(now)
    kwargs: dict[str, Any] = {
        "client_id": config.client_id,
        "token_endpoint": audience,
        "alg": config.alg,
        "claims": claims,
        "header": header,
        "issued_at": issued,
        "expires_at": issued + int(config.assertion_lifetime),
    }
    try:
        if config.auth_method == "client_secret_jwt":
            assert config.client_secret is not None
            secret_key = import_key(config.client_secret.encode(), "oct")
            return str(client_secret_jwt_sign(secret_key, **kwargs))
        private = config.private_key
        assert private is not None
        key: Any
        if isinstance(private, Mapping):
            key = import_key(dict(private))
        elif (config.alg or "").startswith("ES"):
            key = import_key(private, "EC")
        else:
            key = import_key(private, "RSA")
        if config.key_id is None and getattr(key, "kid", None):
            header["kid"] = key.kid
        return str(private_key_jwt_sign(key, **kwargs))
    except UnsupportedAuthMethodError:
        raise
    except Exception as exc:  # joserfc raises many types; the key never appears in the text
        raise UnsupportedAuthMethodError(
            f"cannot sign a {config.auth_method} assertion with alg {config.alg!r}: "
            f"{type(exc).__name__}"
        ) from None


def authenticate(
    config: ClientConfig,
    form: dict[str, str],
    headers: dict[str, str],
    *,
    token_endpoint: str,
    issuer: str,
    now: float,
    jti: str | None = None,
) -> None:
    """Add the client's credentials to a request's form and headers, in place."""
    method = config.auth_method
    if method == "client_secret_basic":
        assert config.client_secret is not None
        raw = f"{_form_encode(config.client_id)}:{_form_encode(config.client_secret)}"
        headers["Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode("ascii")
    elif method == "client_secret_post":
        assert config.client_secret is not None
        form["client_id"] = config.client_id
        form["client_secret"] = config.client_secret
    elif method == "none":
        form["client_id"] = config.client_id
    else:
        audience = config.assertion_audience
        if audience == "token_endpoint":
            audience = token_endpoint
        elif audience == "issuer":
            audience = issuer
        form["client_id"] = config.client_id
        form["client_assertion_type"] = ASSERTION_TYPE
        form["client_assertion"] = _sign_assertion(config, audience=audience, now=now, jti=jti)
