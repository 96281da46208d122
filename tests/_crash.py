"""Crash safety: a process SIGKILLed at each step of a refresh with rotation.

The child registers nothing itself: the parent stores a fresh grant (refresh token, rotation
on at the real test server) in a shared ``DiskStore`` or ``RedisStore``, then starts a child
that refreshes it and kills itself with SIGKILL at one point:

- ``before_request``: the token request is about to leave (httpx request hook);
- ``after_response``: the server answered (it has rotated the refresh token), nothing stored;
- ``inside_replace``: DiskStore only, inside the rotation's transaction, after the new refresh
  token was written and before the old one is removed (Redis runs the rotation as one Lua
  script, which a client cannot interrupt);
- ``after_replace``: the new refresh token is stored, the access token not yet.

Afterwards the parent checks: the store is readable, holds no token twice, and holds a
refresh token that works unless the server had already rotated it (``after_response``,
``inside_replace``: the remaining window, between the server's rotation and the local write).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
from _authserver import AuthServer, obtain_refresh_token
from _concurrency import CLIENT_ID, SUBJECT, _StoreRecipe, client

from oauth2_token_manager import (
    AccessTokenManager,
    ClientConfig,
    InvalidGrant,
    Issuer,
    RefreshTokenManager,
    TokenQuery,
    TokenStore,
)

POINTS = ("before_request", "after_response", "inside_replace", "after_replace")
LEASE = 0.5


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _child(issuer_url: str, secret: str, recipe: _StoreRecipe, point: str) -> None:
    store: Any = recipe()

    def on_request(request: httpx.Request) -> None:
        if point == "before_request" and request.url.path == "/token":
            _die()

    def on_response(response: httpx.Response) -> None:
        if point == "after_response" and response.request.url.path == "/token":
            response.read()
            _die()

    if point == "inside_replace":
        original_replace, original_remove = store.replace, store._remove
        replacing = []

        def replace(old_hash: str, new: Any) -> None:
            replacing.append(True)
            original_replace(old_hash, new)

        def remove(key: Any) -> None:
            if replacing:
                _die()
            original_remove(key)

        store.replace, store._remove = replace, remove
    if point == "after_replace":
        original = store.replace

        def replace_then_die(old_hash: str, new: Any) -> None:
            original(old_hash, new)
            _die()

        store.replace = replace_then_die

    http = httpx.Client(
        timeout=10, event_hooks={"request": [on_request], "response": [on_response]}
    )
    issuer = Issuer(
        issuer_url,
        ClientConfig(CLIENT_ID, secret),
        store=store,
        http=http,
        allow_insecure_loopback=True,
        lock_lease=LEASE,
    )
    AccessTokenManager(issuer).get(SUBJECT, ["api:read"])
    raise SystemExit("the kill point was never reached")


@dataclasses.dataclass
class CrashResult:
    """What the parent found after one kill."""

    point: str
    killed: bool
    readable: bool
    duplicates: int
    refresh_tokens: int
    usable: bool
    """The stored refresh token still works at the server."""
    server_rotated: bool
    """The server had rotated the token before the kill (the documented window)."""


def crash_once(server: AuthServer, recipe: Callable[[], TokenStore], point: str) -> CrashResult:
    """Store a fresh grant, refresh it in a child killed at ``point``, inspect the store."""
    assert isinstance(recipe, _StoreRecipe)
    store = recipe()
    issuer = Issuer(server.issuer, client(server), store=store, allow_insecure_loopback=True)
    tokens = obtain_refresh_token(server, CLIENT_ID)
    RefreshTokenManager(issuer).register(tokens["refresh_token"], subject=SUBJECT)
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(
        target=_child, args=(server.issuer, server.client_secret(CLIENT_ID) or "", recipe, point)
    )
    child.start()
    child.join(60)
    killed = child.exitcode == -signal.SIGKILL
    fresh = recipe()  # a new handle, as a restarted process would open
    readable = True
    try:
        items = fresh.list(TokenQuery()).items
    except Exception:
        readable, items = False, []
    counts = Counter(t.token_hash for t in items)
    refresh = [t for t in items if t.kind == "refresh" and t.subject == SUBJECT]
    # The dead child still holds the store locks: this waits for their lease (LEASE seconds).
    after = Issuer(
        server.issuer,
        client(server),
        store=fresh,
        allow_insecure_loopback=True,
        lock_lease=LEASE,
    )
    usable = False
    try:
        AccessTokenManager(after).get(SUBJECT, ["api:read"])
        usable = True
    except InvalidGrant:
        usable = False
    issuer.close()
    after.close()
    return CrashResult(
        point=point,
        killed=killed,
        readable=readable,
        duplicates=sum(n - 1 for n in counts.values()),
        refresh_tokens=len(refresh),
        usable=usable,
        server_rotated=point in ("after_response", "inside_replace"),
    )
