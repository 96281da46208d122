"""The local protected resource (``tests/_resource_server.py``) against the real test server."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from _authserver import (
    AuthServer,
    client_credentials_token,
    obtain_refresh_token,
    revoke,
)
from _resource_server import ResourceServer, start_resource_server

pytestmark = pytest.mark.integration

CLIENT = "basic-client"
REALM_ONLY = 'Bearer realm="test"'
EXPIRED = 'Bearer realm="test", error="invalid_token", error_description="The access token expired"'


@pytest.fixture
def api(auth_server: AuthServer) -> Iterator[ResourceServer]:
    """A fresh resource server introspecting at the session's authorization server."""
    secret = auth_server.client_secret(CLIENT)
    assert secret is not None
    with start_resource_server(auth_server.issuer, CLIENT, secret) as server:
        yield server


def token(auth_server: AuthServer, scope: str = "api:read") -> str:
    """A client-credentials access token value with ``scope``."""
    value: str = client_credentials_token(auth_server, CLIENT, scope)["access_token"]
    return value


def bearer(value: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {value}"}


def test_no_token_is_401_with_the_realm_only(api: ResourceServer) -> None:
    """A request without a token gets 401 and a bare Bearer challenge."""
    resp = httpx.get(f"{api.url}/read")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == REALM_ONLY
    assert api.requests == [("GET", "/read", False)]


def test_other_scheme_counts_as_no_token(api: ResourceServer) -> None:
    """Basic credentials are not a bearer token: 401 with the bare challenge."""
    resp = httpx.get(f"{api.url}/read", auth=("user", "pass"))
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == REALM_ONLY
    assert api.requests == [("GET", "/read", True)]


def test_valid_token_with_scope_is_200(auth_server: AuthServer, api: ResourceServer) -> None:
    """A client-credentials token with api:read reads: 200 with its introspected fields."""
    resp = httpx.get(f"{api.url}/read", headers=bearer(token(auth_server)))
    assert resp.status_code == 200
    assert resp.json() == {"ok": True, "sub": None, "client_id": CLIENT, "scope": "api:read"}
    assert api.requests == [("GET", "/read", True)]


def test_bearer_scheme_is_case_insensitive(auth_server: AuthServer, api: ResourceServer) -> None:
    """``bearer`` and ``BEARER`` are accepted like ``Bearer``."""
    value = token(auth_server)
    for scheme in ("bearer", "BEARER"):
        assert httpx.get(f"{api.url}/read", headers=bearer(value, scheme)).status_code == 200


def test_user_token_reports_its_subject(auth_server: AuthServer, api: ResourceServer) -> None:
    """An authorization-code access token of alice answers with sub alice."""
    value = obtain_refresh_token(auth_server, CLIENT)["access_token"]
    resp = httpx.get(f"{api.url}/read", headers=bearer(value))
    assert resp.status_code == 200
    assert resp.json()["sub"] == "alice"
    assert "api:read" in resp.json()["scope"].split()


def test_unknown_token_is_401_invalid_token(api: ResourceServer) -> None:
    """A token the authorization server never issued gets 401 invalid_token."""
    resp = httpx.get(f"{api.url}/read", headers=bearer("not-a-real-token"))
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == EXPIRED
    assert resp.json()["error"] == "invalid_token"


def test_revoked_token_is_401_invalid_token(auth_server: AuthServer, api: ResourceServer) -> None:
    """A token revoked at the authorization server is refused as invalid_token."""
    value = token(auth_server)
    assert httpx.get(f"{api.url}/read", headers=bearer(value)).status_code == 200
    assert revoke(auth_server, CLIENT, value, "access_token").status_code == 200
    resp = httpx.get(f"{api.url}/read", headers=bearer(value))
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == EXPIRED


def test_refresh_token_is_not_an_access_token(auth_server: AuthServer, api: ResourceServer) -> None:
    """A refresh token sent as a bearer token is refused as invalid_token."""
    value = obtain_refresh_token(auth_server, CLIENT)["refresh_token"]
    resp = httpx.get(f"{api.url}/read", headers=bearer(value))
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == EXPIRED


def test_missing_scope_is_403_insufficient_scope(
    auth_server: AuthServer, api: ResourceServer
) -> None:
    """A valid token without api:read gets 403 naming the scope /read needs."""
    resp = httpx.get(f"{api.url}/read", headers=bearer(token(auth_server, "api:write")))
    assert resp.status_code == 403
    assert resp.headers["WWW-Authenticate"] == (
        'Bearer realm="test", error="insufficient_scope", scope="api:read"'
    )


def test_write_needs_api_write(auth_server: AuthServer, api: ResourceServer) -> None:
    """POST /write with only api:read gets 403 naming api:write."""
    resp = httpx.post(f"{api.url}/write", headers=bearer(token(auth_server)), content=b"x")
    assert resp.status_code == 403
    assert resp.headers["WWW-Authenticate"].endswith('scope="api:write"')


def test_write_echoes_the_body_length(auth_server: AuthServer, api: ResourceServer) -> None:
    """POST /write with api:write answers 200 with the number of bytes received."""
    resp = httpx.post(
        f"{api.url}/write", headers=bearer(token(auth_server, "api:write")), content=b"a" * 1234
    )
    assert resp.status_code == 200
    assert resp.json()["received_bytes"] == 1234
    assert resp.json()["scope"] == "api:write"
    assert api.requests == [("POST", "/write", True)]


def test_write_reads_a_chunked_body(auth_server: AuthServer, api: ResourceServer) -> None:
    """A streamed (chunked) request body is read and counted too."""

    def chunks() -> Iterator[bytes]:
        yield b"abc"
        yield b"defgh"

    resp = httpx.post(
        f"{api.url}/write", headers=bearer(token(auth_server, "api:write")), content=chunks()
    )
    assert resp.status_code == 200
    assert resp.json()["received_bytes"] == 8


def test_open_needs_no_token(api: ResourceServer) -> None:
    """GET /open answers 200 without a token."""
    resp = httpx.get(f"{api.url}/open")
    assert resp.status_code == 200
    assert resp.json()["ok"] is True
    assert api.requests == [("GET", "/open", False)]


def test_redirect_other_answers_302(api: ResourceServer) -> None:
    """GET /redirect-other?to=URL answers 302 with Location URL."""
    target = "http://127.0.0.1:1/elsewhere?x=1"
    resp = httpx.get(f"{api.url}/redirect-other", params={"to": target})
    assert resp.status_code == 302
    assert resp.headers["Location"] == target
    assert api.requests == [("GET", "/redirect-other", False)]


def test_redirect_to_another_server_is_recorded_there(
    auth_server: AuthServer, api: ResourceServer
) -> None:
    """A followed redirect to a second server shows up in that server's requests."""
    secret = auth_server.client_secret(CLIENT) or ""
    with start_resource_server(auth_server.issuer, CLIENT, secret) as other:
        resp = httpx.get(
            f"{api.url}/redirect-other", params={"to": f"{other.url}/open"}, follow_redirects=True
        )
        assert resp.status_code == 200
        assert other.requests == [("GET", "/open", False)]


def test_force_invalid_rejects_the_next_n_valid_tokens(
    auth_server: AuthServer, api: ResourceServer
) -> None:
    """After force_invalid(2) two valid requests get 401 invalid_token, the third 200."""
    headers = bearer(token(auth_server))
    api.force_invalid(2)
    assert httpx.get(f"{api.url}/read").status_code == 401  # no token: not counted
    with httpx.Client() as client:
        statuses = [client.get(f"{api.url}/read", headers=headers) for _ in range(3)]
    assert [r.status_code for r in statuses] == [401, 401, 200]
    assert statuses[0].headers["WWW-Authenticate"] == EXPIRED
    assert len(api.requests) == 4


def test_unknown_route_and_wrong_method(api: ResourceServer) -> None:
    """An unknown path is 404; a known path with another method is 405."""
    assert httpx.get(f"{api.url}/nope").status_code == 404
    resp = httpx.post(f"{api.url}/read", content=b"x")
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "GET"


def test_introspection_failure_is_502_not_401(auth_server: AuthServer) -> None:
    """When the resource server cannot introspect (bad secret) it says 502, not 401."""
    with start_resource_server(auth_server.issuer, CLIENT, "wrong-secret") as bad:
        resp = httpx.get(f"{bad.url}/read", headers=bearer(token(auth_server)))
    assert resp.status_code == 502


def test_no_token_or_secret_in_logs(
    auth_server: AuthServer,
    api: ResourceServer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Neither the bearer token nor the introspection secret is logged or printed."""
    caplog.set_level(logging.DEBUG)
    value = token(auth_server)
    httpx.get(f"{api.url}/read", headers=bearer(value))
    httpx.get(f"{api.url}/read", headers=bearer("unknown-token-value"))
    out, err = capfd.readouterr()
    text = caplog.text + out + err
    assert "GET /read" in caplog.text  # it does log requests
    secret = auth_server.client_secret(CLIENT) or ""
    for needle in (value, "unknown-token-value", secret):
        assert needle not in text


def test_stop_is_idempotent_and_closes_keep_alive(auth_server: AuthServer) -> None:
    """stop() closes kept-alive connections and may be called twice."""
    secret = auth_server.client_secret(CLIENT) or ""
    server = start_resource_server(auth_server.issuer, CLIENT, secret)
    with httpx.Client() as client:
        assert client.get(f"{server.url}/open").status_code == 200
        server.stop()
        server.stop()
        with pytest.raises(httpx.TransportError):
            client.get(f"{server.url}/open")
