"""A real protected resource for the tests and examples: bearer tokens checked by introspection.

A threaded stdlib ``http.server`` on a free port of 127.0.0.1. Every request carrying
``Authorization: Bearer <token>`` is checked at the authorization server's RFC 7662
introspection endpoint (found in its discovery document), authenticated with
client_secret_basic. Routes:

- ``GET /read``   needs scope ``api:read``
- ``POST /write`` needs scope ``api:write``; the answer also carries ``received_bytes``
- ``GET /open``   needs no token
- ``GET /redirect-other?to=URL`` answers ``302`` to URL (no token needed)

Answers (RFC 6750 §3): no token → 401 ``WWW-Authenticate: Bearer realm="test"``; an inactive,
unknown or non-access token → 401 ``error="invalid_token"``; a token without the route's
scope → 403 ``error="insufficient_scope", scope="..."``; else 200 JSON
``{"ok": true, "sub", "client_id", "scope"}``. ``force_invalid(n)`` makes the next ``n``
requests with an active token fail with 401 ``invalid_token`` (to test a client's retry).

Typical use::

    with start_resource_server(auth.issuer, "post-client", secret) as api:
        httpx.get(f"{api.url}/read", headers={"Authorization": f"Bearer {token}"})
        assert api.requests == [("GET", "/read", True)]

It logs (logger ``tests.resource_server``, DEBUG) the method, path and status only: never a
header, a token or the introspection client's secret.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit

__all__ = ["REALM", "ResourceServer", "ResourceServerError", "start_resource_server"]

logger = logging.getLogger("tests.resource_server")

REALM = "test"
HTTP_TIMEOUT = 10.0
MAX_BODY = 16 * 1024 * 1024
# Route -> (method, required scope or None when no token is needed).
ROUTES: dict[str, tuple[str, str | None]] = {
    "/read": ("GET", "api:read"),
    "/write": ("POST", "api:write"),
    "/open": ("GET", None),
    "/redirect-other": ("GET", None),
}


class ResourceServerError(RuntimeError):
    """The resource server could not start (no introspection endpoint, discovery failed)."""


class _IntrospectionFailed(Exception):
    """The authorization server did not answer the introspection request properly."""


def _open(request: urllib.request.Request | str) -> Any:
    # Only http(s) URLs built here from the issuer's discovery document are opened.
    return urllib.request.urlopen(request, timeout=HTTP_TIMEOUT)  # noqa: S310


def _discover_introspection_endpoint(issuer: str) -> str:
    url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
    try:
        with _open(url) as resp:
            doc = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        raise ResourceServerError(f"discovery at {url} failed: {exc}") from exc
    endpoint = doc.get("introspection_endpoint") if isinstance(doc, dict) else None
    if not isinstance(endpoint, str) or not endpoint:
        raise ResourceServerError(f"{url} names no introspection_endpoint")
    return endpoint


def _basic_auth(client_id: str, client_secret: str) -> str:
    """client_secret_basic: id and secret form-encoded before base64 (RFC 6749 §2.3.1)."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


@dataclass
class ResourceServer:
    """A running resource server; a context manager that stops it on exit.

    ``requests`` lists every request received as (method, path without query, whether an
    ``Authorization`` header was present), in arrival order.
    """

    url: str
    introspection_endpoint: str
    _introspect: Callable[[str], dict[str, Any]] = field(repr=False)
    requests: list[tuple[str, str, bool]] = field(default_factory=list)
    _httpd: ThreadingHTTPServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _force_invalid: int = field(default=0, repr=False)
    _connections: set[socket.socket] = field(default_factory=set, repr=False)

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    def force_invalid(self, n: int) -> None:
        """Answer the next ``n`` requests bearing an active token with 401 invalid_token."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._force_invalid = n

    def _take_forced_invalid(self) -> bool:
        with self._lock:
            if self._force_invalid > 0:
                self._force_invalid -= 1
                return True
            return False

    def stop(self) -> None:
        """Stop serving, close open keep-alive connections and the socket (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ResourceServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs; every answer has Content-Length
    server_version = "TestResourceServer/1"
    timeout = 30  # an idle keep-alive connection is closed after this many seconds
    resource: ResourceServer  # set on the subclass made by start_resource_server

    # -- connection bookkeeping (so that stop() can close idle keep-alive connections) ------

    def setup(self) -> None:
        super().setup()
        with self.resource._lock:
            self.resource._connections.add(self.connection)

    def finish(self) -> None:
        with self.resource._lock:
            self.resource._connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        # The request line holds no secret; headers (Authorization) are never logged.
        logger.debug("%s " + format, self.address_string(), *args)

    # -- request parsing --------------------------------------------------------------------

    def _read_body(self) -> bytes:
        """The whole request body (Content-Length or chunked); read before any answer."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise ValueError("request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)  # CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _bearer_token(self) -> str | None:
        """The token of ``Authorization: Bearer <token>`` (scheme case-insensitive), or None."""
        header = self.headers.get("Authorization")
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        return token

    # -- answers ----------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        payload = json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _challenge(self, status: int, error: str | None = None, **params: str) -> None:
        parts = [f'realm="{REALM}"']
        if error is not None:
            parts.append(f'error="{error}"')
        parts.extend(f'{name}="{value}"' for name, value in params.items())
        body: dict[str, Any] = {"error": error or "unauthorized"}
        if "error_description" in params:
            body["error_description"] = params["error_description"]
        self._send(status, body, {"WWW-Authenticate": "Bearer " + ", ".join(parts)})

    def _invalid_token(self) -> None:
        self._challenge(401, "invalid_token", error_description="The access token expired")

    # -- dispatch ---------------------------------------------------------------------------

    def _handle(self) -> None:
        split = urlsplit(self.path)
        path = split.path
        self.resource.requests.append((self.command, path, "Authorization" in self.headers))
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send(413 if "too large" in str(exc) else 400, {"error": "bad_request_body"})
            return
        route = ROUTES.get(path)
        if route is None:
            self._send(404, {"error": "not_found"})
            return
        method, scope = route
        if self.command != method:
            self._send(405, {"error": "method_not_allowed"}, {"Allow": method})
            return
        if path == "/redirect-other":
            target = parse_qs(split.query).get("to", [""])[0]
            if not target:
                self._send(400, {"error": "missing ?to="})
                return
            self._send(302, {"location": target}, {"Location": target})
            return
        if scope is None:  # /open
            self._send(200, {"ok": True, "open": True})
            return

        token = self._bearer_token()
        if token is None:
            self._challenge(401)
            return
        try:
            info = self.resource._introspect(token)
        except _IntrospectionFailed as exc:
            self._send(502, {"error": "introspection_failed", "detail": str(exc)})
            return
        token_type = str(info.get("token_type", "")).lower()
        if info.get("active") is not True or token_type != "bearer":
            self._invalid_token()  # unknown, expired, revoked, or not an access token
            return
        if self.resource._take_forced_invalid():
            self._invalid_token()
            return
        granted = str(info.get("scope") or "").split()
        if scope not in granted:
            self._challenge(403, "insufficient_scope", scope=scope)
            return
        answer: dict[str, Any] = {
            "ok": True,
            "sub": info.get("sub"),
            "client_id": info.get("client_id"),
            "scope": info.get("scope"),
        }
        if path == "/write":
            answer["received_bytes"] = len(body)
        self._send(200, answer)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing its connection (curl after a 401, a stopped test) is not an error;
        # anything else is logged with its traceback instead of printed to stderr.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            logger.debug("connection from %s ended: %s", client_address[0], type(exc).__name__)
        else:
            logger.error("error while handling a request from %s", client_address[0], exc_info=True)


def _introspector(endpoint: str, authorization: str) -> Callable[[str], dict[str, Any]]:
    """A function introspecting a token value at ``endpoint`` (the secret stays in here)."""

    def introspect(token: str) -> dict[str, Any]:
        data = urlencode({"token": token, "token_type_hint": "access_token"}).encode()
        request = urllib.request.Request(  # noqa: S310 -- the discovered http(s) endpoint
            endpoint,
            data=data,
            method="POST",
            headers={
                "Authorization": authorization,
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        try:
            with _open(request) as resp:
                info = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise _IntrospectionFailed(f"introspection answered HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise _IntrospectionFailed(f"introspection failed: {type(exc).__name__}") from None
        if not isinstance(info, dict):
            raise _IntrospectionFailed("introspection answered no JSON object")
        return info

    return introspect


def start_resource_server(
    auth_server_issuer: str, introspection_client_id: str, introspection_client_secret: str
) -> ResourceServer:
    """Start a resource server on a free 127.0.0.1 port; it introspects at ``auth_server_issuer``.

    The introspection client authenticates with client_secret_basic. The result is a context
    manager; otherwise call ``stop()``.
    """
    endpoint = _discover_introspection_endpoint(auth_server_issuer)
    introspect = _introspector(
        endpoint, _basic_auth(introspection_client_id, introspection_client_secret)
    )
    resource = ResourceServer(url="", introspection_endpoint=endpoint, _introspect=introspect)
    handler = type("ResourceHandler", (_Handler,), {"resource": resource})
    httpd = _Server(("127.0.0.1", 0), handler)
    port = httpd.server_address[1]
    resource.url = f"http://127.0.0.1:{port}"
    resource._httpd = httpd
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"resource-server-{port}",
        daemon=True,
    )
    resource._thread = thread
    thread.start()
    return resource


def main(argv: list[str]) -> int:
    """Run COMMAND with ``API_URL`` set to a resource server for ``$OAUTH2_ISSUER``.

    The resource server introspects with ``$OAUTH2_CLIENT_ID`` / ``$OAUTH2_CLIENT_SECRET``
    (as ``scripts/run_with_authserver.py`` sets them). Usage::

        python scripts/run_with_authserver.py \\
            python tests/_resource_server.py python examples/httpx_sync.py
    """
    if not argv:
        print(main.__doc__, file=sys.stderr)
        return 2
    with start_resource_server(
        os.environ["OAUTH2_ISSUER"],
        os.environ["OAUTH2_CLIENT_ID"],
        os.environ["OAUTH2_CLIENT_SECRET"],
    ) as server:
        print(f"(test resource server listening at {server.url})", flush=True)
        return subprocess.call(argv, env={**os.environ, "API_URL": server.url})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
