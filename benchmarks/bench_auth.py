"""Per-request cost of ``TokenAuth`` on a cached token, side by side with its peers.

Every client sends ``GET https://api.example/data`` through one ``httpx.MockTransport``:

- static: an ``Authorization`` header set on the client (the floor: no token management);
- oauth2_token_manager: ``manager.auth(scopes=[...])`` on a plain client, token cached;
- httpx-auth: ``OAuth2ClientCredentials`` with its token cached;
- Authlib: ``OAuth2Client`` (an httpx.Client subclass) holding a valid token.

Rounds interleave the clients so that machine noise hits them alike; the table gives the
median µs per request and the overhead over the static header. Target (issue 3): at most
+3 µs (≤ 1.03x) for oauth2_token_manager, sync and async.

Usage: python benchmarks/bench_auth.py [--quick]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client
from httpx_auth import OAuth2ClientCredentials

from oauth2_token_manager import (
    AccessTokenManager,
    AsyncAccessTokenManager,
    AsyncIssuer,
    ClientConfig,
    Issuer,
)

ISSUER = "https://as.example"
TOKEN_URL = f"{ISSUER}/token"
API = "https://api.example/data"
TOKEN = "bench-access-token"


def handler(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/token":
        return httpx.Response(
            200, json={"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600}
        )
    return httpx.Response(200, content=b"ok")


TRANSPORT = httpx.MockTransport(handler)
CLIENT = ClientConfig("bench", "secret")
ISSUER_OPTIONS: dict[str, Any] = {"discovery": False, "metadata": {"token_endpoint": TOKEN_URL}}


def sync_clients() -> dict[str, httpx.Client]:
    issuer = Issuer(ISSUER, CLIENT, http=httpx.Client(transport=TRANSPORT), **ISSUER_OPTIONS)
    manager = AccessTokenManager(issuer)
    peer = OAuth2ClientCredentials(
        TOKEN_URL, "bench", "secret", scope="read", client=httpx.Client(transport=TRANSPORT)
    )
    token = {"access_token": TOKEN, "token_type": "Bearer", "expires_at": time.time() + 3600}
    return {
        "static header": httpx.Client(
            transport=TRANSPORT, headers={"Authorization": f"Bearer {TOKEN}"}
        ),
        "oauth2_token_manager": httpx.Client(
            transport=TRANSPORT, auth=manager.auth(scopes=["read"])
        ),
        "httpx-auth": httpx.Client(transport=TRANSPORT, auth=peer),
        "Authlib": OAuth2Client(
            "bench", "secret", token=token, token_endpoint=TOKEN_URL, transport=TRANSPORT
        ),
    }


def async_clients() -> dict[str, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=TRANSPORT)
    manager = AsyncAccessTokenManager(AsyncIssuer(ISSUER, CLIENT, http=http, **ISSUER_OPTIONS))
    token = {"access_token": TOKEN, "token_type": "Bearer", "expires_at": time.time() + 3600}
    return {
        "static header": httpx.AsyncClient(
            transport=TRANSPORT, headers={"Authorization": f"Bearer {TOKEN}"}
        ),
        "oauth2_token_manager": httpx.AsyncClient(
            transport=TRANSPORT, auth=manager.auth(scopes=["read"])
        ),
        "Authlib": AsyncOAuth2Client(
            "bench", "secret", token=token, token_endpoint=TOKEN_URL, transport=TRANSPORT
        ),
    }


def run_sync(rounds: int, batch: int) -> dict[str, float]:
    clients = sync_clients()
    for client in clients.values():  # warm up: fetch and cache the tokens
        assert client.get(API).status_code == 200
    samples: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(rounds):
        for name, client in clients.items():
            start = time.perf_counter()
            for _ in range(batch):
                client.get(API)
            samples[name].append((time.perf_counter() - start) / batch)
    return {name: statistics.median(values) for name, values in samples.items()}


async def run_async(rounds: int, batch: int) -> dict[str, float]:
    clients = async_clients()
    for client in clients.values():
        assert (await client.get(API)).status_code == 200
    samples: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(rounds):
        for name, client in clients.items():
            get: Callable[[str], Awaitable[httpx.Response]] = client.get
            start = time.perf_counter()
            for _ in range(batch):
                await get(API)
            samples[name].append((time.perf_counter() - start) / batch)
    return {name: statistics.median(values) for name, values in samples.items()}


def table(title: str, results: dict[str, float]) -> None:
    floor = results["static header"]
    print(f"\n{title}")
    print(f"{'client':<24}{'µs/request':>12}{'overhead':>12}{'ratio':>8}")
    for name, seconds in results.items():
        print(
            f"{name:<24}{seconds * 1e6:>12.1f}{(seconds - floor) * 1e6:>+12.1f}"
            f"{seconds / floor:>8.3f}"
        )


def main() -> None:
    quick = "--quick" in sys.argv
    rounds, batch = (10, 200) if quick else (60, 500)
    table("sync (httpx.Client)", run_sync(rounds, batch))
    table(
        "async (httpx.AsyncClient; httpx-auth has no async flow)",
        asyncio.run(run_async(rounds, batch)),
    )


if __name__ == "__main__":
    main()
