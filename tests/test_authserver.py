"""The real test authorization server (tests/authorization_server) and its Python helpers."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from _authserver import (
    ALL_SCOPES,
    CLIENT_IDS,
    AuthServer,
    AuthServerError,
    client_credentials_token,
    discovery,
    introspect,
    obtain_refresh_token,
    refresh,
    revoke,
    start_auth_server,
    token_request,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server():
    with start_auth_server(rotate_refresh_token=True) as srv:
        yield srv


@pytest.fixture(scope="module")
def server_no_rotation():
    with start_auth_server(
        rotate_refresh_token=False, access_token_ttl=120, refresh_token_ttl=600, id_token_ttl=300
    ) as srv:
        yield srv


def test_discovery_document(server: AuthServer):
    """The server starts on loopback and its discovery document names the expected endpoints."""
    doc = discovery(server)
    assert doc["issuer"] == server.issuer
    assert server.issuer.startswith("http://127.0.0.1:")
    assert doc["token_endpoint"] == server.token_endpoint
    assert doc["introspection_endpoint"] == server.introspection_endpoint
    assert doc["revocation_endpoint"] == server.revocation_endpoint
    assert doc["authorization_endpoint"] == server.authorization_endpoint
    assert doc["jwks_uri"] == server.jwks_uri
    assert {"client_credentials", "authorization_code", "refresh_token"} <= set(
        doc["grant_types_supported"]
    )
    assert set(ALL_SCOPES) <= set(doc["scopes_supported"])


@pytest.mark.parametrize("client_id", CLIENT_IDS)
def test_client_credentials(server: AuthServer, client_id: str):
    """client_credentials works for each client's auth method and never returns a refresh token."""
    tokens = client_credentials_token(server, client_id, "api:read api:write")
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "api:read api:write"
    assert tokens["expires_in"] == 3600
    assert "refresh_token" not in tokens
    assert tokens["access_token"].count(".") == 0  # opaque, not a JWT


def test_basic_auth_needs_form_encoding(server: AuthServer):
    """basic-client's secret must be form-urlencoded in the Basic header (RFC 6749 2.3.1)."""
    secret = server.client_secret("basic-client")
    resp = httpx.post(
        server.token_endpoint,
        data={"grant_type": "client_credentials"},
        auth=("basic-client", secret),  # httpx does not form-encode: the server must reject it
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_request"
    assert "not properly encoded" in resp.json()["error_description"]


@pytest.mark.parametrize("client_id", CLIENT_IDS)
def test_obtain_refresh_token(server: AuthServer, client_id: str):
    """The headless authorization-code flow yields access, refresh and ID tokens for each client."""
    tokens = obtain_refresh_token(server, client_id)
    assert tokens["refresh_token"]
    assert tokens["access_token"]
    assert tokens["id_token"].count(".") == 2
    assert set(tokens["scope"].split()) == {"openid", "offline_access", "api:read"}
    assert tokens["expires_in"] == 3600


def test_obtain_refresh_token_without_pkce(server: AuthServer):
    """The code flow also works without PKCE."""
    tokens = obtain_refresh_token(
        server, "post-client", scopes=("offline_access", "api:write"), pkce=False
    )
    assert tokens["refresh_token"]
    assert "id_token" not in tokens
    assert set(tokens["scope"].split()) == {"offline_access", "api:write"}


@pytest.mark.parametrize("client_id", CLIENT_IDS)
def test_rotation_and_reuse_detection(server: AuthServer, client_id: str):
    """Rotation on: refresh gives a new refresh token; reusing the old one is invalid_grant."""
    old = obtain_refresh_token(server, client_id)["refresh_token"]
    first = refresh(server, client_id, old)
    assert first.status_code == 200, first.text
    new = first.json()["refresh_token"]
    assert new != old
    assert first.json()["access_token"]

    reuse = refresh(server, client_id, old)
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"

    after = refresh(server, client_id, new)  # reuse detection revoked the newer one too
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"


def test_refresh_with_narrower_scope(server: AuthServer):
    """A refresh may ask for fewer scopes than were granted."""
    tokens = obtain_refresh_token(
        server, "basic-client", scopes=("openid", "offline_access", "api:read", "api:write")
    )
    resp = refresh(server, "basic-client", tokens["refresh_token"], scope="api:read")
    assert resp.status_code == 200, resp.text
    assert resp.json()["scope"] == "api:read"


def test_no_rotation_keeps_refresh_token(server_no_rotation: AuthServer):
    """With rotation off, the refresh token stays the same and can be used repeatedly."""
    tokens = obtain_refresh_token(server_no_rotation, "post-client")
    rt = tokens["refresh_token"]
    access_tokens = {tokens["access_token"]}
    for _ in range(2):
        resp = refresh(server_no_rotation, "post-client", rt)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["refresh_token"] == rt
        assert body["expires_in"] == 120  # AS_ACCESS_TOKEN_TTL applies
        access_tokens.add(body["access_token"])
    assert len(access_tokens) == 3


def test_ttl_settings(server_no_rotation: AuthServer):
    """AS_ACCESS_TOKEN_TTL, AS_REFRESH_TOKEN_TTL and AS_ID_TOKEN_TTL reach the issued tokens."""
    tokens = obtain_refresh_token(server_no_rotation, "basic-client")
    assert tokens["expires_in"] == 120
    rt_info = introspect(server_no_rotation, "basic-client", tokens["refresh_token"])
    assert rt_info["exp"] - rt_info["iat"] == 600
    id_claims = json.loads(base64.urlsafe_b64decode(tokens["id_token"].split(".")[1] + "=="))
    assert id_claims["exp"] - id_claims["iat"] == 300
    assert id_claims["sub"] == "alice"
    cc = client_credentials_token(server_no_rotation, "jwt-client", "api:admin")
    assert cc["expires_in"] == 120


def test_introspection_active(server: AuthServer):
    """Introspection of an issued token, by any client, says active with its scope and client."""
    tokens = client_credentials_token(server, "basic-client", "api:read")
    info = introspect(server, "jwt-client", tokens["access_token"])
    assert info["active"] is True
    assert info["client_id"] == "basic-client"
    assert info["scope"] == "api:read"
    assert info["exp"] > info["iat"]


def test_revocation_then_inactive(server: AuthServer):
    """Revoking an access token and a refresh token makes introspection report them inactive."""
    at = client_credentials_token(server, "post-client", "api:read")["access_token"]
    resp = revoke(server, "post-client", at, "access_token")
    assert resp.status_code == 200
    assert introspect(server, "post-client", at) == {"active": False}

    rt = obtain_refresh_token(server, "jwt-client")["refresh_token"]
    assert introspect(server, "jwt-client", rt)["active"] is True
    assert revoke(server, "jwt-client", rt, "refresh_token").status_code == 200
    assert introspect(server, "jwt-client", rt) == {"active": False}
    again = refresh(server, "jwt-client", rt)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_token_counters(server: AuthServer):
    """GET /test/counters counts POST /token by grant type (failures too); reset zeroes it."""
    server.reset_counts()
    assert server.token_counts()["total"] == 0

    client_credentials_token(server, "basic-client", "api:read")
    client_credentials_token(server, "jwt-client", "api:read")
    tokens = obtain_refresh_token(server, "basic-client")
    refresh(server, "basic-client", tokens["refresh_token"])
    bad = token_request(
        server, "basic-client", {"grant_type": "refresh_token", "refresh_token": "nope"}
    )
    assert bad.status_code == 400

    counts = server.token_counts()
    assert counts == {
        "total": 5,
        "client_credentials": 2,
        "authorization_code": 1,
        "refresh_token": 2,
    }
    assert counts["device_code"] == 0
    assert server.counters()["failed_by_grant_type"] == {"refresh_token": 1}

    server.reset_counts()
    assert server.token_counts() == {"total": 0}


def test_start_failure_reports_stderr():
    """A server that cannot start raises promptly with its stderr in the message."""
    with pytest.raises(AuthServerError, match="ACCESS_TOKEN_TTL"):
        start_auth_server(access_token_ttl="not-a-number")
