"""A loopback HTTP proxy in front of the test authorization server that breaks answers on command.

Routing: nothing is rewritten. The library keeps the server's own URLs (issuer, discovery URL,
every endpoint of the discovery document), so the issuer check passes untouched; only its
httpx client is built with ``mounts=proxy.mounts()``, which sends every request for the
server's origin (``http://127.0.0.1:PORT``) through an ``httpx.HTTPTransport(proxy=...)`` to
this proxy. The proxy thus receives plain forward-proxy requests
(``POST http://127.0.0.1:PORT/token HTTP/1.1``, ``Host`` unchanged), forwards them to the server
and relays the answers, one connection per request (``Connection: close``).

On command it breaks the next answer(s) to one path (exact match, query ignored)::

    with FaultProxy(server.issuer) as proxy:
        http = httpx.Client(mounts=proxy.mounts(), timeout=0.5)
        with proxy.fault("/token", "http_503_retry_after") as injection:
            ...  # the next POST /token is answered 503; injection.hits counts it
        with proxy.refusing():
            ...  # the listening socket is closed: connecting is refused (ECONNREFUSED)

Every fault but ``refused`` forwards the request first (the server processes it, as when an
answer is lost on the way back), then replaces, mutates, withholds or cuts the answer.
``exchanges`` records each request: path, fault, whether the mutation found its field, the body
bytes written and whether the client hung up before the whole body was sent (oversized bodies).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import http.client
import json
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = ["BAD_RETRY_AFTER", "FAULTS", "OVERSIZE_BYTES", "Exchange", "FaultProxy", "Injection"]

OVERSIZE_BYTES = 32 * 1024 * 1024
"""Length of the oversized bodies: far past the library's 1 MiB limit and the socket buffers."""

BAD_RETRY_AFTER = "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"
"""An HTTP date whose year overflows every date type."""

FAULTS: dict[str, str] = {
    "refused": "connection refused (the proxy's listening socket is closed)",
    "no_answer": "request forwarded, then the connection is reset without an answer",
    "reset_mid_body": "headers and half the body, then a TCP reset",
    "read_timeout": "the answer is held longer than the client's read timeout",
    "http_500": "500 with an HTML body",
    "http_502": "502 with an HTML body",
    "http_503_retry_after": "503 with Retry-After: 2",
    "http_503_bad_retry_after": "503 with a Retry-After date in the year 99999999999999999999",
    "http_429": "429 with Retry-After: 1",
    "html_200": "200 with an HTML login page",
    "invalid_json": "200, application/json, a body that is not JSON",
    "truncated_json": "200, the JSON answer cut in half (Content-Length matches the cut)",
    "oversized_declared": "200, a 32 MiB body announced by Content-Length",
    "oversized_chunked": "200, a 32 MiB chunked body (no length announced)",
    "gzip_bomb": "200, 32 KiB of gzip that inflates to 32 MiB",
    "text_plain_json": "200, the real JSON answer labelled text/plain",
    "missing_access_token": "the token answer without access_token",
    "unknown_token_type": 'token_type "N_A"',
    "expires_in_negative": "expires_in -5",
    "expires_in_zero": "expires_in 0",
    "expires_in_huge": "expires_in 1e12",
    "expires_in_numeric_string": 'expires_in "3600" (a numeric string: valid)',
    "expires_in_word": 'expires_in "soon"',
    "duplicate_keys": "a key sent twice, a forged value first and the real one last",
}
"""Every fault the proxy knows, with what it does."""

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_MAX_HEAD = 64 * 1024
_CHUNK = 64 * 1024
_HTML_ERROR = b"<!DOCTYPE html><html><body><h1>%d %s</h1><p>nginx</p></body></html>"
_LOGIN_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>"
    b'<form method="post" action="/login"><input name="user"><input name="password" '
    b'type="password"><button>Sign in</button></form></body></html>'
)
_PADDING = b'{"error": "server_error", "error_description": "padding so a body has a middle"}'
_DUPLICATE_PREFERENCE = ("access_token", "active", "issuer", "sub")
_EXPIRES_IN: dict[str, Any] = {
    "expires_in_negative": -5,
    "expires_in_zero": 0,
    "expires_in_huge": 1e12,
    "expires_in_numeric_string": "3600",
    "expires_in_word": "soon",
}


@dataclasses.dataclass(eq=False)
class Injection:
    """A fault armed for the next ``times`` requests to ``path``; ``hits`` counts them."""

    path: str
    fault: str
    times: int = 1
    hits: int = 0

    @property
    def remaining(self) -> int:
        return self.times - self.hits


@dataclasses.dataclass
class Exchange:
    """One request through the proxy and what was done to its answer."""

    method: str
    path: str
    fault: str | None = None
    upstream_status: int | None = None
    mutated: bool | None = None
    """For faults that edit the real answer: whether the field (or body) to edit was there."""
    body_bytes: int = 0
    """Length of the body the proxy meant to send (decoded length for ``gzip_bomb``)."""
    bytes_sent: int = 0
    """Body bytes the proxy managed to write before the client hung up (or all of them)."""
    closed_early: bool = False
    """The client hung up before the whole body was written (or, for ``read_timeout``, before
    the held answer was sent)."""
    done: threading.Event = dataclasses.field(
        default_factory=threading.Event, repr=False, compare=False
    )
    """Set when the proxy is finished with this request (answer sent, cut or abandoned)."""


@dataclasses.dataclass
class _Request:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclasses.dataclass
class _Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class FaultProxy:
    """A forward HTTP proxy on a free 127.0.0.1 port for one upstream origin (context manager).

    ``hold`` is how long ``read_timeout`` keeps an answer (longer than any client timeout the
    tests use); ``on_upstream_body`` sees every real answer body (the tests record issued
    tokens with it for the log leak check).
    """

    def __init__(
        self,
        upstream: str,
        *,
        hold: float = 3.0,
        on_upstream_body: Callable[[bytes], None] | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self.upstream = f"http://{parts.hostname}:{parts.port}"
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port
        self.hold = hold
        self._on_upstream_body = on_upstream_body
        self._lock = threading.Lock()
        self._listener_lock = threading.Lock()
        self._stopping = threading.Event()
        self._injections: list[Injection] = []
        self._handlers: set[threading.Thread] = set()
        self._accept_thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self.port = 0
        self.exchanges: list[Exchange] = []
        self.errors: list[BaseException] = []
        """Unexpected exceptions in the proxy's own code (a test should find none)."""

    # --- life cycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="fault-proxy-accept", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, release held answers and wait for the handler threads."""
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        with self._listener_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        with self._lock:
            handlers = list(self._handlers)
        for thread in handlers:
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def mounts(self) -> dict[str, httpx.BaseTransport]:
        """``httpx.Client(mounts=...)`` sending every request for the upstream through here."""
        return {self.upstream: httpx.HTTPTransport(proxy=self.url)}

    # --- commands ---------------------------------------------------------------------------

    def inject(self, path: str, fault: str, times: int = 1) -> Injection:
        """Break the answers to the next ``times`` requests for ``path`` with ``fault``."""
        if fault not in FAULTS or fault == "refused":
            raise ValueError(f"unknown path fault {fault!r} (use refusing() for 'refused')")
        injection = Injection(path, fault, times)
        with self._lock:
            self._injections.append(injection)
        return injection

    @contextlib.contextmanager
    def fault(self, path: str, fault: str, times: int = 1) -> Iterator[Injection]:
        """``inject`` for the duration of a ``with`` block; unused remainders are dropped."""
        injection = self.inject(path, fault, times)
        try:
            yield injection
        finally:
            with self._lock:
                if injection in self._injections:
                    self._injections.remove(injection)

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._injections.clear()

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        """Close the listening socket (connections are refused), reopen it on the same port."""
        with self._listener_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        try:
            yield
        finally:
            with self._listener_lock:
                if self._listener is None and not self._stopping.is_set():
                    self._listener = self._listen(self.port)

    # --- serving ----------------------------------------------------------------------------

    @staticmethod
    def _listen(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        return sock

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            with self._listener_lock:
                listener = self._listener
                conn = None
                if listener is not None:
                    ready, _, _ = select.select([listener], [], [], 0.05)
                    if ready:
                        with contextlib.suppress(OSError):
                            conn, _ = listener.accept()
            if listener is None:
                self._stopping.wait(0.01)
            if conn is not None:
                thread = threading.Thread(
                    target=self._handle, args=(conn,), name="fault-proxy-conn", daemon=True
                )
                with self._lock:
                    self._handlers = {t for t in self._handlers if t.is_alive()}
                    self._handlers.add(thread)
                thread.start()

    def _take(self, path: str) -> str | None:
        with self._lock:
            for injection in self._injections:
                if injection.path == path and injection.remaining > 0:
                    injection.hits += 1
                    if injection.remaining == 0:
                        self._injections.remove(injection)
                    return injection.fault
        return None

    def _handle(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(10)
                request = _read_request(conn)
                if request is None:
                    return
                exchange = Exchange(request.method, request.path, self._take(request.path))
                with self._lock:
                    self.exchanges.append(exchange)
                try:
                    answer = self._forward(request)
                    exchange.upstream_status = answer.status
                    if self._on_upstream_body is not None:
                        self._on_upstream_body(answer.body)
                    self._respond(conn, exchange, answer)
                finally:
                    exchange.done.set()
        except (OSError, http.client.HTTPException):
            pass  # the client went away, or the upstream did: nothing to answer
        except Exception as exc:  # a bug in the proxy: reported through ``errors``
            self.errors.append(exc)

    def _forward(self, request: _Request) -> _Answer:
        upstream = http.client.HTTPConnection(self._upstream_host, self._upstream_port, timeout=10)
        try:
            upstream.putrequest(
                request.method, request.path, skip_host=True, skip_accept_encoding=True
            )
            for name, value in request.headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() != "accept-encoding":
                    upstream.putheader(name, value)
            upstream.putheader("Accept-Encoding", "identity")  # bodies are edited as they are
            upstream.putheader("Connection", "close")
            upstream.endheaders(request.body or None)
            response = upstream.getresponse()
            body = response.read()
            headers = [
                (name, value)
                for name, value in response.getheaders()
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length"
            ]
            return _Answer(response.status, response.reason, headers, body)
        finally:
            upstream.close()

    def _hold(self, conn: socket.socket) -> bool:
        """Wait ``hold`` seconds; False as soon as the client hangs up (or the proxy stops)."""
        deadline = time.monotonic() + self.hold
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            ready, _, _ = select.select([conn], [], [], min(left, 0.05))
            if ready:
                try:
                    data = conn.recv(1)
                except OSError:
                    data = b""
                if not data:
                    return False
        return False

    def _respond(self, conn: socket.socket, exchange: Exchange, answer: _Answer) -> None:
        fault = exchange.fault
        if fault == "no_answer":
            _reset(conn)
            return
        if fault == "read_timeout":
            if self._hold(conn):
                _send_answer(conn, exchange, answer)
            else:
                exchange.closed_early = True
            return
        if fault == "reset_mid_body":
            body = answer.body if len(answer.body) >= 16 else _PADDING
            exchange.body_bytes = len(body)
            conn.sendall(_head(answer.status, answer.reason, answer.headers, len(body)))
            conn.sendall(body[: len(body) // 2])
            exchange.bytes_sent = len(body) // 2
            _reset(conn)
            return
        if fault in ("oversized_declared", "oversized_chunked"):
            _send_oversized(conn, exchange, chunked=fault == "oversized_chunked")
            return
        if fault == "gzip_bomb":
            headers = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
            _send_answer(conn, exchange, _Answer(200, "OK", headers, _gzip_bomb()))
            exchange.body_bytes = OVERSIZE_BYTES
            return
        if fault is not None:
            answer = _broken(fault, answer, exchange)
        _send_answer(conn, exchange, answer)


# --- answers --------------------------------------------------------------------------------


def _read_request(conn: socket.socket) -> _Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > _MAX_HEAD:
            raise OSError("request head too large")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    parts = urlsplit(target)  # absolute form (forward proxy) or origin form
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return _Request(method, path + query, headers, body[:length])


def _head(status: int, reason: str, headers: list[tuple[str, str]], length: int | None) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if length is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _send_answer(conn: socket.socket, exchange: Exchange, answer: _Answer) -> None:
    exchange.body_bytes = len(answer.body)
    conn.sendall(_head(answer.status, answer.reason, answer.headers, len(answer.body)))
    conn.sendall(answer.body)
    exchange.bytes_sent = len(answer.body)


def _reset(conn: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0) instead of an orderly FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _send_oversized(conn: socket.socket, exchange: Exchange, *, chunked: bool) -> None:
    """A 200 JSON body of ``OVERSIZE_BYTES``, counting what gets written before a hang-up."""
    headers = [("Content-Type", "application/json")]
    exchange.body_bytes = OVERSIZE_BYTES
    conn.sendall(_head(200, "OK", headers, None if chunked else OVERSIZE_BYTES))
    prefix = b'{"access_token": "'
    filler = b"A" * _CHUNK
    sent = 0
    try:
        while sent < OVERSIZE_BYTES:
            piece = (prefix + filler)[:_CHUNK] if sent == 0 else filler
            piece = piece[: OVERSIZE_BYTES - sent]
            if chunked:
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                conn.sendall(piece)
            sent += len(piece)
        if chunked:
            conn.sendall(b"0\r\n\r\n")
    except OSError:
        exchange.closed_early = True
    exchange.bytes_sent = sent


@functools.cache
def _gzip_bomb() -> bytes:
    """``OVERSIZE_BYTES`` of JSON, gzipped (about 32 KiB)."""
    return gzip.compress(b'{"pad": "' + b" " * (OVERSIZE_BYTES - 11) + b'"}', compresslevel=9)


def _content_type(answer: _Answer) -> str:
    return next((v for k, v in answer.headers if k.lower() == "content-type"), "")


def _with_content_type(answer: _Answer, content_type: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in answer.headers if k.lower() != "content-type"] + [
        ("Content-Type", content_type)
    ]


def _broken(fault: str, answer: _Answer, exchange: Exchange) -> _Answer:
    """The answer ``fault`` makes of the real ``answer`` (``exchange.mutated`` says whether
    an edit of the real answer found what it edits)."""
    if fault.startswith("http_"):
        status = int(fault.split("_")[1])
        reason = http.client.responses[status]
        headers = [("Content-Type", "text/html; charset=utf-8")]
        if fault == "http_503_retry_after":
            headers.append(("Retry-After", "2"))
        if fault == "http_503_bad_retry_after":
            headers.append(("Retry-After", BAD_RETRY_AFTER))
        if fault == "http_429":
            headers.append(("Retry-After", "1"))
        return _Answer(status, reason, headers, _HTML_ERROR % (status, reason.encode()))
    if fault == "html_200":
        return _Answer(200, "OK", [("Content-Type", "text/html; charset=utf-8")], _LOGIN_PAGE)
    if fault == "invalid_json":
        body = b"{'access_token': 'x', token_type: Bearer,}"
        return _Answer(200, "OK", [("Content-Type", "application/json")], body)
    if fault == "truncated_json":
        if len(answer.body) < 2:  # nothing to cut (revocation): a cut document of our own
            return _Answer(200, "OK", [("Content-Type", "application/json")], _PADDING[:20])
        exchange.mutated = True
        body = answer.body[: len(answer.body) // 2]
        return _Answer(answer.status, answer.reason, answer.headers, body)
    if fault == "text_plain_json":
        exchange.mutated = bool(answer.body) and not _content_type(answer).startswith("text/")
        headers = _with_content_type(answer, "text/plain; charset=utf-8")
        return _Answer(answer.status, answer.reason, headers, answer.body)
    edit = _duplicate_key if fault == "duplicate_keys" else functools.partial(_edit_json, fault)
    edited = edit(answer.body)
    exchange.mutated = edited is not None
    return dataclasses.replace(answer, body=edited if edited is not None else answer.body)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data else None


def _edit_json(fault: str, body: bytes) -> bytes | None:
    """The body with one field edited, or ``None`` when the field is not there."""
    data = _json_object(body)
    if data is None:
        return None
    if fault == "missing_access_token":
        if "access_token" not in data:
            return None
        del data["access_token"]
    elif fault == "unknown_token_type":
        if "token_type" not in data:
            return None
        data["token_type"] = "N_A"
    elif fault in _EXPIRES_IN:
        if "expires_in" not in data:
            return None
        data["expires_in"] = _EXPIRES_IN[fault]
    else:
        raise ValueError(f"not a field fault: {fault!r}")
    return json.dumps(data).encode()


def _duplicate_key(body: bytes) -> bytes | None:
    """``{"key": forged, <the real members>}``: the real value comes last, so a parser that
    keeps the last of duplicate keys sees nothing wrong; one that keeps the first is forged."""
    data = _json_object(body)
    if data is None:
        return None
    key = next((k for k in _DUPLICATE_PREFERENCE if k in data), next(iter(data)))
    real = data[key]
    forged: Any = (not real) if isinstance(real, bool) else f"forged-{key}"
    text = body.lstrip()
    return b"{" + json.dumps(key).encode() + b": " + json.dumps(forged).encode() + b", " + text[1:]
