"""Start the real test authorization server (npm ``oidc-provider``) and talk to it.

The server lives in ``tests/authorization_server/server.mjs`` (run ``npm ci`` in that folder
once). Each :func:`start_auth_server` call runs a private instance on a free port of
127.0.0.1; all tokens live in that process's memory.

Typical use::

    with start_auth_server(access_token_ttl=2, rotate_refresh_token=True) as server:
        tokens = obtain_refresh_token(server, "basic-client")
        resp = refresh(server, "basic-client", tokens["refresh_token"])
        assert server.token_counts()["refresh_token"] == 1

Client ids, secrets and the jwt-client public key are in ``authorization_server/clients.json``;
the jwt-client private JWK is in ``authorization_server/jwt-client-private.json``.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import html
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, quote_plus, urljoin, urlsplit

import httpx

AS_DIR = Path(__file__).resolve().parent / "authorization_server"
SERVER_SCRIPT = AS_DIR / "server.mjs"
CLIENTS_FILE = AS_DIR / "clients.json"
JWT_CLIENT_PRIVATE_JWK_FILE = AS_DIR / "jwt-client-private.json"

REDIRECT_URI = "http://127.0.0.1/callback"
ALL_SCOPES = ("openid", "offline_access", "profile", "email", "api:read", "api:write", "api:admin")
CLIENT_IDS = ("basic-client", "post-client", "jwt-client")

STARTUP_TIMEOUT = 20.0
HTTP_TIMEOUT = 10.0


class AuthServerError(RuntimeError):
    """The test authorization server failed to start or answered unexpectedly."""


def load_clients() -> dict[str, dict[str, Any]]:
    """The fixed test clients (oidc-provider client metadata), keyed by client_id."""
    clients: dict[str, dict[str, Any]] = json.loads(CLIENTS_FILE.read_text(encoding="utf-8"))
    return clients


def load_jwt_client_private_jwk() -> dict[str, Any]:
    """The private JWK (EC P-256, ES256) of ``jwt-client``."""
    jwk: dict[str, Any] = json.loads(JWT_CLIENT_PRIVATE_JWK_FILE.read_text(encoding="utf-8"))
    return jwk


# --------------------------------------------------------------------------------------------
# Server process
# --------------------------------------------------------------------------------------------


@dataclass
class AuthServer:
    """A running test authorization server. Also a context manager that stops it on exit."""

    issuer: str
    port: int
    process: subprocess.Popen[bytes]
    clients: dict[str, dict[str, Any]]
    env: dict[str, str] = field(default_factory=dict)  # the AS_* settings it was started with
    startup_seconds: float = 0.0
    _stderr: IO[bytes] | None = field(default=None, repr=False)
    _stdout_lines: list[str] = field(default_factory=list, repr=False)
    _reader: threading.Thread | None = field(default=None, repr=False)
    _stderr_final: str = field(default="", repr=False)  # kept after stop() closes the file

    # Endpoints (oidc-provider's default routes).
    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.issuer}/auth"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/token/introspection"

    @property
    def revocation_endpoint(self) -> str:
        return f"{self.issuer}/token/revocation"

    @property
    def userinfo_endpoint(self) -> str:
        return f"{self.issuer}/me"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    def client_secret(self, client_id: str) -> str | None:
        return self.clients[client_id].get("client_secret")

    # Test-only counters of POST /token.
    def counters(self) -> dict[str, Any]:
        """Raw counters: ``{"total", "by_grant_type", "failed_by_grant_type"}``."""
        resp = httpx.get(f"{self.issuer}/test/counters", timeout=HTTP_TIMEOUT)
        resp.raise_for_status()
        raw: dict[str, Any] = resp.json()
        return raw

    def token_counts(self) -> collections.Counter[str]:
        """Token-endpoint requests so far: ``{"total": N, "<grant_type>": n, ...}``.

        A Counter, so a grant type never requested reads as 0. Failed requests are included
        (see :meth:`counters` for the failed ones alone).
        """
        raw = self.counters()
        return collections.Counter({"total": raw["total"], **raw["by_grant_type"]})

    def reset_counts(self) -> None:
        resp = httpx.post(f"{self.issuer}/test/counters/reset", timeout=HTTP_TIMEOUT)
        resp.raise_for_status()

    def stderr_text(self) -> str:
        """Everything the server wrote to stderr so far (warnings, server errors)."""
        if self._stderr is None or self._stderr.closed:
            return self._stderr_final
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def stop(self) -> None:
        """Terminate the server and wait for it (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self._stderr is not None and not self._stderr.closed:
            self._stderr_final = self.stderr_text()
            self._stderr.close()

    def __enter__(self) -> AuthServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _normalize_env(env: Mapping[str, Any]) -> dict[str, str]:
    """Accept ``AS_ACCESS_TOKEN_TTL=5`` as well as ``access_token_ttl=5``; bools become 1/0."""
    out: dict[str, str] = {}
    for key, value in env.items():
        if value is None:
            continue
        name = key.upper()
        if not name.startswith("AS_"):
            name = f"AS_{name}"
        out[name] = _env_value(value)
    return out


def start_auth_server(*, timeout: float = STARTUP_TIMEOUT, **env: Any) -> AuthServer:
    """Start a private server on a free 127.0.0.1 port and wait for its ``READY`` line.

    Keyword arguments become its environment: ``access_token_ttl``, ``refresh_token_ttl``,
    ``rotate_refresh_token`` (bool), ``id_token_ttl``, ``token_delay_ms``, ``issuer`` (or the
    same names spelled ``AS_...``). ``AS_PORT`` is chosen here unless given. Raises
    :class:`AuthServerError` (with the server's stderr) if it exits or is not ready in time.
    The result is a context manager; otherwise call ``stop()``.
    """
    node = shutil.which("node")
    if node is None:
        raise AuthServerError("node is not on PATH (the test server needs Node >= 20.18)")
    if not (AS_DIR / "node_modules" / "oidc-provider").is_dir():
        raise AuthServerError(f"oidc-provider is not installed: run `npm ci` in {AS_DIR}")

    settings = _normalize_env(env)
    fixed_port = "AS_PORT" in settings
    attempts = 1 if fixed_port else 3  # a free port can be taken between probe and bind
    last_error: AuthServerError | None = None
    for _ in range(attempts):
        if not fixed_port:
            settings["AS_PORT"] = str(_free_port())
        try:
            return _spawn(node, settings, timeout)
        except AuthServerError as exc:
            last_error = exc
            if "EADDRINUSE" not in str(exc):
                raise
    assert last_error is not None
    raise last_error


def _spawn(node: str, settings: dict[str, str], timeout: float) -> AuthServer:
    # Inherited AS_* variables must not leak into a server configured by the caller.
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith("AS_")}
    proc_env.update(settings)
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 -- lives as long as the server; closed by stop()
    started = time.monotonic()
    process = subprocess.Popen(
        [node, str(SERVER_SCRIPT)],
        cwd=AS_DIR,
        env=proc_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )

    # A thread drains stdout for the whole life of the process and signals the READY line
    # (or EOF, if the process dies first).
    lines: list[str] = []
    ready = threading.Event()
    issuer_box: list[str] = []

    def read_stdout() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            if not issuer_box and line.startswith("READY "):
                issuer_box.append(line.split(" ", 1)[1].strip())
                ready.set()
        ready.set()

    reader = threading.Thread(target=read_stdout, name="authserver-stdout", daemon=True)
    reader.start()

    server = AuthServer(
        issuer="",
        port=int(settings["AS_PORT"]),
        process=process,
        clients=load_clients(),
        env=dict(settings),
        _stderr=stderr,
        _stdout_lines=lines,
        _reader=reader,
    )
    if not ready.wait(timeout) or not issuer_box:
        alive = process.poll() is None
        server.stop()
        what = f"not ready after {timeout:.0f}s" if alive else f"exited ({process.returncode})"
        message = (
            f"test authorization server {what}\n--- stdout ---\n"
            + "\n".join(lines)
            + f"\n--- stderr ---\n{server.stderr_text()}"
        )
        raise AuthServerError(message)
    server.issuer = issuer_box[0]
    server.startup_seconds = time.monotonic() - started
    return server


# --------------------------------------------------------------------------------------------
# Client authentication and raw endpoint calls
# --------------------------------------------------------------------------------------------


def client_assertion(
    server: AuthServer, client_id: str = "jwt-client", audience: str | None = None
) -> str:
    """A fresh private_key_jwt assertion (single use: the server rejects replays)."""
    from joserfc import jwt
    from joserfc.jwk import ECKey

    jwk = load_jwt_client_private_jwk()
    key = ECKey.import_key(jwk)
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience or server.issuer,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 60,
    }
    return jwt.encode(
        {"alg": jwk.get("alg", "ES256"), "kid": jwk["kid"], "typ": "JWT"}, claims, key
    )


def client_auth(server: AuthServer, client_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, form fields) authenticating ``client_id`` with its registered method."""
    client = server.clients[client_id]
    method = client["token_endpoint_auth_method"]
    if method == "client_secret_basic":
        # RFC 6749 2.3.1: form-urlencode id and secret before base64.
        pair = f"{quote_plus(client_id)}:{quote_plus(client['client_secret'])}"
        token = base64.b64encode(pair.encode()).decode()
        return {"Authorization": f"Basic {token}"}, {}
    if method == "client_secret_post":
        return {}, {"client_id": client_id, "client_secret": client["client_secret"]}
    if method == "private_key_jwt":
        return {}, {
            "client_id": client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion(server, client_id),
        }
    raise ValueError(f"unsupported token_endpoint_auth_method {method!r}")


def _post(server: AuthServer, url: str, client_id: str, data: Mapping[str, str]) -> httpx.Response:
    headers, auth_fields = client_auth(server, client_id)
    return httpx.post(url, data={**data, **auth_fields}, headers=headers, timeout=HTTP_TIMEOUT)


def token_request(server: AuthServer, client_id: str, data: Mapping[str, str]) -> httpx.Response:
    """POST ``data`` to /token authenticated as ``client_id``; the raw response."""
    return _post(server, server.token_endpoint, client_id, data)


def _json_or_raise(resp: httpx.Response, what: str) -> dict[str, Any]:
    if resp.status_code != 200:
        raise AuthServerError(f"{what} failed: HTTP {resp.status_code} {resp.text}")
    body: dict[str, Any] = resp.json()
    return body


def client_credentials_token(
    server: AuthServer, client_id: str, scope: str | Iterable[str] | None = None
) -> dict[str, Any]:
    """A client_credentials token response (access_token, expires_in, scope, token_type)."""
    data = {"grant_type": "client_credentials"}
    if scope:
        data["scope"] = scope if isinstance(scope, str) else " ".join(scope)
    return _json_or_raise(token_request(server, client_id, data), "client_credentials grant")


def refresh(
    server: AuthServer, client_id: str, refresh_token: str, scope: str | None = None
) -> httpx.Response:
    """A raw refresh_token grant request (check status_code / json() yourself)."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scope:
        data["scope"] = scope
    return token_request(server, client_id, data)


def introspect(
    server: AuthServer, client_id: str, token: str, token_type_hint: str | None = None
) -> dict[str, Any]:
    """RFC 7662 introspection response (any client may introspect any token)."""
    data = {"token": token}
    if token_type_hint:
        data["token_type_hint"] = token_type_hint
    return _json_or_raise(
        _post(server, server.introspection_endpoint, client_id, data), "introspection"
    )


def revoke(
    server: AuthServer, client_id: str, token: str, token_type_hint: str | None = None
) -> httpx.Response:
    """RFC 7009 revocation (200 on success; only the token's own client may revoke it)."""
    data = {"token": token}
    if token_type_hint:
        data["token_type_hint"] = token_type_hint
    return _post(server, server.revocation_endpoint, client_id, data)


def discovery(server: AuthServer) -> dict[str, Any]:
    resp = httpx.get(server.discovery_url, timeout=HTTP_TIMEOUT)
    resp.raise_for_status()
    doc: dict[str, Any] = resp.json()
    return doc


# --------------------------------------------------------------------------------------------
# Authorization-code flow without a person (devInteractions login + consent forms)
# --------------------------------------------------------------------------------------------

_FORM_RE = re.compile(r'<form[^>]*\baction="([^"]+)"[^>]*>(.*?)</form>', re.S | re.I)
_PROMPT_RE = re.compile(r'<input[^>]*name="prompt"[^>]*value="([^"]+)"', re.I)


def _interaction_form(page: str) -> tuple[str, str]:
    """(action, prompt) of the devInteractions form on an interaction page."""
    for action, body in _FORM_RE.findall(page):
        prompt = _PROMPT_RE.search(body)
        if prompt:
            return html.unescape(action), prompt.group(1)
    raise AuthServerError(f"no interaction form in page:\n{page[:2000]}")


def obtain_refresh_token(
    server: AuthServer,
    client_id: str,
    scopes: Iterable[str] = ("openid", "offline_access", "api:read"),
    user: str = "alice",
    *,
    pkce: bool = True,
) -> dict[str, Any]:
    """Run the authorization-code flow as ``user`` and return the full token response.

    GET /auth (prompt=consent, so offline_access survives) -> login form -> consent form ->
    redirect to REDIRECT_URI?code=... (read from Location; nothing listens there) -> code
    exchange at /token with the client's own authentication method. PKCE S256 unless
    ``pkce=False``. The response has access_token, refresh_token (when offline_access is
    among the scopes), id_token (with openid), scope, expires_in, token_type.
    """
    scope = " ".join(scopes)
    state = secrets.token_urlsafe(16)
    params = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "prompt": "consent",
        "state": state,
    }
    if "openid" in scope.split():
        params["nonce"] = secrets.token_urlsafe(16)  # only allowed with openid
    verifier = None
    if pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        params["code_challenge"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        params["code_challenge_method"] = "S256"

    # One cookie jar for the whole browser-like exchange; redirects followed by hand.
    with httpx.Client(follow_redirects=False, timeout=HTTP_TIMEOUT) as browser:
        resp = browser.get(server.authorization_endpoint, params=params)
        callback: str | None = None
        for _ in range(20):
            if resp.is_redirect:
                location = urljoin(str(resp.url), resp.headers["location"])
                if location.startswith(REDIRECT_URI):
                    callback = location
                    break
                resp = browser.get(location)
            elif resp.status_code == 200:
                action, prompt = _interaction_form(resp.text)
                if prompt == "login":
                    form = {"prompt": "login", "login": user, "password": "any-password"}
                elif prompt == "consent":
                    form = {"prompt": "consent"}
                else:
                    raise AuthServerError(f"unexpected interaction prompt {prompt!r}")
                resp = browser.post(urljoin(str(resp.url), action), data=form)
            else:
                raise AuthServerError(
                    f"authorization flow: HTTP {resp.status_code} at {resp.url}\n{resp.text[:2000]}"
                )
        if callback is None:
            raise AuthServerError("authorization flow did not reach the redirect_uri")

    query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    if "error" in query:
        raise AuthServerError(f"authorization error: {query}")
    if query.get("state") != state:
        raise AuthServerError(f"state mismatch in {callback}")

    data = {"grant_type": "authorization_code", "code": query["code"], "redirect_uri": REDIRECT_URI}
    if verifier:
        data["code_verifier"] = verifier
    return _json_or_raise(token_request(server, client_id, data), "authorization_code exchange")
