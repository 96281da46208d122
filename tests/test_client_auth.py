"""Unit tests of client authentication methods (RFC 6749 §2.3, RFC 7523) without I/O."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import import_key

from oauth2_token_manager import ClientConfig, UnsupportedAuthMethodError
from oauth2_token_manager._client_auth import ASSERTION_TYPE, authenticate

PRIVATE_JWK = json.loads(
    (Path(__file__).parent / "authorization_server" / "jwt-client-private.json").read_text()
)
TOKEN_URL = "https://as.example/token"


def test_private_key_jwt_assertion_claims() -> None:
    """private_key_jwt signs iss=sub=client_id, aud=token endpoint, iat=now, exp=now+30."""
    config = ClientConfig(
        "jwt-client", auth_method="private_key_jwt", private_key=PRIVATE_JWK, signing_alg="ES256"
    )
    form: dict[str, str] = {}
    authenticate(config, form, {}, token_endpoint=TOKEN_URL, issuer="https://as.example", now=1000)
    assert form["client_assertion_type"] == ASSERTION_TYPE
    public = import_key({k: v for k, v in PRIVATE_JWK.items() if k != "d"})
    token = jwt.decode(form["client_assertion"], public, algorithms=["ES256"])
    claims = token.claims
    assert (claims["iss"], claims["sub"], claims["aud"]) == ("jwt-client", "jwt-client", TOKEN_URL)
    assert (claims["iat"], claims["exp"]) == (1000, 1030)
    assert claims["jti"]


def test_each_assertion_has_a_fresh_jti_and_issuer_audience_option() -> None:
    """Two assertions never share a jti; assertion_audience='issuer' uses the issuer."""
    config = ClientConfig(
        "c",
        "a-long-enough-shared-secret-for-hmac-256!",
        auth_method="client_secret_jwt",
        assertion_audience="issuer",
    )
    jtis = set()
    for _ in range(2):
        form: dict[str, str] = {}
        authenticate(config, form, {}, token_endpoint=TOKEN_URL, issuer="https://iss", now=5)
        key = import_key(config.client_secret.encode(), "oct")  # type: ignore[union-attr]
        claims = jwt.decode(form["client_assertion"], key, algorithms=["HS256"]).claims
        assert claims["aud"] == "https://iss"
        jtis.add(claims["jti"])
    assert len(jtis) == 2


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"auth_method": "client_secret_basic"}, "needs a client_secret"),
        ({"auth_method": "client_secret_jwt"}, "needs a client_secret"),
        ({"auth_method": "private_key_jwt"}, "needs a private_key"),
        ({"auth_method": "tls_client_auth"}, "unsupported client authentication"),
    ],
)
def test_incomplete_configuration_is_rejected(kwargs: dict[str, str], problem: str) -> None:
    """A method without its credentials, or an unknown method, is a typed error."""
    with pytest.raises(UnsupportedAuthMethodError, match=problem):
        ClientConfig("c", **kwargs)  # type: ignore[arg-type]


def test_unusable_key_is_a_typed_error_without_the_key() -> None:
    """A key that cannot sign gives UnsupportedAuthMethodError that does not quote the key."""
    config = ClientConfig("c", auth_method="private_key_jwt", private_key="not a pem at all")
    with pytest.raises(UnsupportedAuthMethodError) as info:
        authenticate(config, {}, {}, token_endpoint=TOKEN_URL, issuer="i", now=0)
    assert "not a pem" not in str(info.value)
