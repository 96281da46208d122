"""repr and str of every configuration, manager, store and auth object hide secrets and keys."""

from __future__ import annotations

from pathlib import Path

from oauth2_token_manager import (
    AccessToken,
    AccessTokenManager,
    AsyncAccessTokenManager,
    AsyncClaimsManager,
    AsyncIssuer,
    ClaimsManager,
    ClientConfig,
    DiskStore,
    IntrospectionResult,
    Issuer,
    IssuerOptions,
    MemoryStore,
    RefreshTokenManager,
    TokenResponse,
    generate_encryption_key,
)

SECRET = "client-secret-never-shown"
TOKEN = "token-value-never-shown"
PRIVATE_JWK = {"kty": "oct", "k": "cHJpdmF0ZS1rZXktbmV2ZXItc2hvd24", "kid": "k"}


def test_nothing_secret_in_any_repr(tmp_path: Path) -> None:
    """Client secrets, private keys, decryption keys, store keys and token values never
    appear in repr() or str() of the public objects that hold them."""
    key = generate_encryption_key()
    client = ClientConfig(
        "cid",
        SECRET,
        auth_method="client_secret_basic",
        decryption_keys={"keys": [PRIVATE_JWK]},
    )
    jwt_client = ClientConfig("cid", auth_method="private_key_jwt", private_key=PRIVATE_JWK)
    store = DiskStore(tmp_path, encryption_keys=[key])
    issuer = Issuer(
        "https://as.example",
        client,
        store=store,
        discovery=False,
        metadata={"token_endpoint": "https://as.example/token"},
    )
    async_issuer = AsyncIssuer(
        "https://as.example",
        client,
        discovery=False,
        metadata={"token_endpoint": "https://as.example/token"},
    )
    access = AccessTokenManager(issuer)
    objects: list[object] = [
        client,
        jwt_client,
        store,
        MemoryStore(),
        issuer,
        async_issuer,
        issuer.options,
        IssuerOptions(),
        access,
        RefreshTokenManager(issuer),
        AsyncAccessTokenManager(async_issuer),
        ClaimsManager(issuer),
        AsyncClaimsManager(async_issuer),
        access.auth(scopes=["a"]),
        AccessToken(TOKEN, "https://as.example", "cid"),
        TokenResponse(TOKEN, "Bearer", 60, None, TOKEN, TOKEN, {}),
        IntrospectionResult(active=True, raw={"token": TOKEN}),
    ]
    secrets = [SECRET, TOKEN, key, PRIVATE_JWK["k"]]
    for obj in objects:
        for text in (repr(obj), str(obj)):
            for secret in secrets:
                assert secret not in text, f"{type(obj).__name__} shows a secret"
    issuer.close()


def test_client_config_repr_shows_nothing_derived_from_a_secret() -> None:
    """ClientConfig's repr says a secret, key or key set is set, with no hash or other
    derivative of it (an unsalted hash prefix let a weak secret be guessed from one log)."""
    weak = ClientConfig("cid", "hunter2", auth_method="client_secret_basic")
    other = ClientConfig("cid", "correct horse", auth_method="client_secret_basic")
    keyed = ClientConfig(
        "cid",
        auth_method="private_key_jwt",
        private_key=PRIVATE_JWK,
        decryption_keys={"keys": [PRIVATE_JWK]},
    )
    assert repr(weak) == repr(other)  # nothing in the text depends on the secret
    assert "client_secret=<set>" in repr(weak)
    assert "private_key=<set>" in repr(keyed)
    assert "decryption_keys=<set>" in repr(keyed)
