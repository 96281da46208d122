"""Tests of AsyncMetadataCache and read_bounded against httpx.MockTransport."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
from _clock import FakeClock

from oauth2_token_manager._async._discovery import AsyncMetadataCache
from oauth2_token_manager._async._http import read_bounded
from oauth2_token_manager._exceptions import (
    HTTPStatusError,
    InsecureEndpointError,
    InvalidResponseError,
    IssuerMismatchError,
    MetadataError,
    TransportError,
)

ISSUER = "https://as.example/tenant"
OPENID_URL = "https://as.example/tenant/.well-known/openid-configuration"
RFC8414_URL = "https://as.example/.well-known/oauth-authorization-server/tenant"
OPENID_INSERTED_URL = "https://as.example/.well-known/openid-configuration/tenant"

Handler = Callable[[httpx.Request], "httpx.Response | Awaitable[httpx.Response]"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Server:
    """A fake authorization server: URL → handler, with a log of requested URLs."""

    def __init__(self, routes: dict[str, Handler] | None = None) -> None:
        self.routes: dict[str, Handler] = dict(routes or {})
        self.requests: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        handler = self.routes.get(str(request.url))
        if handler is None:
            return httpx.Response(404, text="not found")
        response = handler(request)
        if not isinstance(response, httpx.Response):
            response = await response
        return response

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


def doc(issuer: str = ISSUER, **fields: Any) -> dict[str, Any]:
    return {"issuer": issuer, "token_endpoint": f"{issuer}/token", **fields}


def serve(body: dict[str, Any], status: int = 200) -> Handler:
    return lambda request: httpx.Response(status, json=body)


def cache(server: Server, clock: FakeClock, **kwargs: Any) -> AsyncMetadataCache:
    return AsyncMetadataCache(ISSUER, server.client(), clock=clock, **kwargs)


@pytest.mark.anyio
async def test_openid_location_is_tried_first() -> None:
    """A server publishing OpenID's appended location is discovered in one request."""
    server = Server({OPENID_URL: serve(doc())})
    metadata = await cache(server, FakeClock()).get()
    assert metadata.token_endpoint == f"{ISSUER}/token"
    assert metadata.source == OPENID_URL
    assert server.requests == [OPENID_URL]


@pytest.mark.anyio
async def test_falls_back_from_404_to_the_next_url() -> None:
    """A 404 at the first well-known URL moves on to the RFC 8414 location."""
    server = Server({RFC8414_URL: serve(doc())})
    metadata = await cache(server, FakeClock()).get()
    assert metadata.source == RFC8414_URL
    assert server.requests == [OPENID_URL, RFC8414_URL]


@pytest.mark.anyio
async def test_html_and_redirects_also_move_on() -> None:
    """An HTML page and an unfollowed redirect both mean 'not here'."""
    server = Server(
        {
            OPENID_URL: lambda r: httpx.Response(200, html="<html>app shell</html>"),
            RFC8414_URL: lambda r: httpx.Response(302, headers={"location": "/login"}),
            OPENID_INSERTED_URL: serve(doc()),
        }
    )
    metadata = await cache(server, FakeClock()).get()
    assert metadata.source == OPENID_INSERTED_URL
    assert server.requests == [OPENID_URL, RFC8414_URL, OPENID_INSERTED_URL]


@pytest.mark.anyio
async def test_no_document_anywhere_lists_every_attempt() -> None:
    """When every URL says 'not here' the MetadataError names each URL and answer."""
    server = Server({RFC8414_URL: lambda r: httpx.Response(405)})
    with pytest.raises(MetadataError) as info:
        await cache(server, FakeClock()).get()
    message = str(info.value)
    for url in (OPENID_URL, RFC8414_URL, OPENID_INSERTED_URL):
        assert url in message
    assert "HTTP 405" in message and "HTTP 404" in message


@pytest.mark.anyio
async def test_issuer_mismatch_stops_the_search() -> None:
    """A real document for another issuer is an error, never skipped for the next URL."""
    server = Server(
        {
            OPENID_URL: serve(doc("https://evil.example")),
            RFC8414_URL: serve(doc()),
        }
    )
    with pytest.raises(IssuerMismatchError):
        await cache(server, FakeClock()).get()
    assert server.requests == [OPENID_URL]


@pytest.mark.anyio
async def test_insecure_endpoint_in_discovered_document() -> None:
    """A discovered http endpoint makes the fetch fail with InsecureEndpointError."""
    server = Server({OPENID_URL: serve(doc(token_endpoint="http://as.example/token"))})
    with pytest.raises(InsecureEndpointError, match="token_endpoint"):
        await cache(server, FakeClock()).get()


@pytest.mark.anyio
async def test_document_is_cached_for_an_hour() -> None:
    """The document is fetched once, reused for 3600 s, then fetched again."""
    server = Server({OPENID_URL: serve(doc())})
    clock = FakeClock()
    metadata_cache = cache(server, clock)
    first = await metadata_cache.get()
    clock.now += 3599
    assert await metadata_cache.get() is first
    assert len(server.requests) == 1
    clock.now += 1
    await metadata_cache.get()
    assert len(server.requests) == 2


@pytest.mark.anyio
async def test_failed_refresh_keeps_last_good_document_and_waits_10s() -> None:
    """After a failed refresh the old document is served and no request is sent for 10 s."""
    server = Server({OPENID_URL: serve(doc())})
    clock = FakeClock()
    metadata_cache = cache(server, clock)
    good = await metadata_cache.get()

    server.routes[OPENID_URL] = lambda r: httpx.Response(503, text="maintenance")
    clock.now += 3600
    assert await metadata_cache.get() is good
    assert len(server.requests) == 2
    assert isinstance(metadata_cache.state.last_error, HTTPStatusError)

    clock.now += 9.9
    assert await metadata_cache.get() is good
    assert len(server.requests) == 2

    server.routes[OPENID_URL] = serve(doc(token_endpoint=f"{ISSUER}/v2/token"))
    clock.now += 0.1
    fresh = await metadata_cache.get()
    assert fresh.token_endpoint == f"{ISSUER}/v2/token"
    assert len(server.requests) == 3
    assert metadata_cache.state.last_error is None


@pytest.mark.anyio
async def test_first_failure_is_raised_and_remembered_for_10s() -> None:
    """Without a good document the failure itself is raised, again, until the retry."""
    server = Server({OPENID_URL: lambda r: httpx.Response(500)})
    clock = FakeClock()
    metadata_cache = cache(server, clock)
    with pytest.raises(HTTPStatusError) as first:
        await metadata_cache.get()
    clock.now += 5
    with pytest.raises(HTTPStatusError) as second:
        await metadata_cache.get()
    assert second.value is first.value
    assert len(server.requests) == 1
    clock.now += 5
    server.routes[OPENID_URL] = serve(doc())
    assert (await metadata_cache.get()).issuer == ISSUER
    assert len(server.requests) == 2


@pytest.mark.anyio
async def test_invalidate_fetches_again() -> None:
    """invalidate() makes the next get() fetch even within the hour."""
    server = Server({OPENID_URL: serve(doc())})
    metadata_cache = cache(server, FakeClock())
    await metadata_cache.get()
    metadata_cache.invalidate()
    await metadata_cache.get()
    assert len(server.requests) == 2


@pytest.mark.parametrize("mechanism", [True, False], ids=["lock", "lock-off"])
@pytest.mark.anyio
async def test_concurrent_gets_share_one_fetch(mechanism: bool) -> None:
    """Many concurrent callers cause a single fetch (the others wait under the lock): the
    document is held back until every caller waits. With the lock made a no-op, the same race
    makes one fetch per caller."""
    release = anyio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json=doc())

    server = Server({OPENID_URL: held})
    metadata_cache = cache(server, FakeClock())
    if not mechanism:
        metadata_cache._lock.hold = lambda key: contextlib.nullcontext()  # type: ignore[method-assign,assignment,return-value]
    results: list[Any] = []

    async def worker() -> None:
        results.append(await metadata_cache.get())

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(worker)
        await anyio.wait_all_tasks_blocked()  # each caller: in the fetch or on the lock
        release.set()
    if not mechanism:
        assert len(server.requests) == 20
        return
    assert len(server.requests) == 1
    assert len(results) == 20
    assert all(result is results[0] for result in results)


@pytest.mark.anyio
async def test_discovery_disabled_uses_overrides_only() -> None:
    """With discovery=False no request is sent and the overrides are the metadata."""
    server = Server()
    metadata_cache = cache(
        server, FakeClock(), discovery=False, overrides={"token_endpoint": f"{ISSUER}/token"}
    )
    metadata = await metadata_cache.get()
    assert metadata.issuer == ISSUER
    assert metadata.token_endpoint == f"{ISSUER}/token"
    assert server.requests == []


@pytest.mark.anyio
async def test_overrides_apply_to_discovered_document() -> None:
    """Configured fields replace the discovered ones."""
    server = Server({OPENID_URL: serve(doc())})
    overrides = {"token_endpoint": "https://gw.example/token"}
    metadata = await cache(server, FakeClock(), overrides=overrides).get()
    assert metadata.token_endpoint == "https://gw.example/token"


def test_insecure_issuer_is_rejected_at_construction() -> None:
    """An http issuer is a configuration error unless it is an allowed loopback."""
    server = Server()
    with pytest.raises(InsecureEndpointError):
        AsyncMetadataCache("http://as.example", server.client(), clock=FakeClock())
    with pytest.raises(InsecureEndpointError):
        AsyncMetadataCache("http://127.0.0.1:8080", server.client(), clock=FakeClock())
    AsyncMetadataCache(
        "http://127.0.0.1:8080", server.client(), clock=FakeClock(), allow_insecure_loopback=True
    )


@pytest.mark.anyio
async def test_oversized_body_is_rejected() -> None:
    """A metadata body over 1 MiB (declared length) fails and is not skipped."""
    big = doc(padding="x" * (1024 * 1024))
    server = Server({OPENID_URL: serve(big), RFC8414_URL: serve(doc())})
    with pytest.raises(InvalidResponseError, match="larger than 1048576 bytes"):
        await cache(server, FakeClock()).get()
    assert server.requests == [OPENID_URL]


@pytest.mark.anyio
async def test_oversized_streamed_body_stops_reading() -> None:
    """A body without Content-Length is cut off once it passes the limit."""
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            sent.append(1)
            yield b"x" * 65536

    server = Server({OPENID_URL: lambda r: httpx.Response(200, content=chunks())})
    async with server.client() as http:
        with pytest.raises(InvalidResponseError, match="larger than"):
            await read_bounded(http, http.build_request("GET", OPENID_URL), 1024 * 1024)
    assert len(sent) < 64


@pytest.mark.anyio
async def test_read_bounded_returns_raw_response() -> None:
    """Status, lowercase headers, body and a query-free URL come back in RawResponse."""
    server = Server(
        {
            "https://as.example/x?code=abc": lambda r: httpx.Response(
                201, headers={"X-Thing": "1", "Content-Type": "text/plain"}, content=b"hello"
            )
        }
    )
    async with server.client() as http:
        raw = await read_bounded(http, http.build_request("GET", "https://as.example/x?code=abc"))
    assert raw.status_code == 201
    assert raw.headers["x-thing"] == "1"
    assert raw.content_type == "text/plain"
    assert raw.content == b"hello"
    assert raw.url == "https://as.example/x"
    assert "hello" not in repr(raw)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError, httpx.ReadTimeout, httpx.ConnectTimeout, httpx.RemoteProtocolError],
)
async def test_transport_errors_name_the_url_without_secrets(
    error: type[httpx.TransportError],
) -> None:
    """Transport failures become TransportError with the class name and no query string."""
    url = "https://user:pw123@as.example/token?client_secret=s3cr3t"

    def fail(request: httpx.Request) -> httpx.Response:
        raise error(f"failed talking to {request.url}", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(fail)) as http:
        with pytest.raises(TransportError) as info:
            await read_bounded(http, http.build_request("GET", url))
    assert info.value.endpoint == "https://as.example/token"
    assert error.__name__ in info.value.reason
    for secret in ("s3cr3t", "client_secret", "pw123"):
        assert secret not in str(info.value)


@pytest.mark.anyio
async def test_transport_error_during_discovery_is_raised() -> None:
    """A connection failure stops discovery (no further URLs) and is a TransportError."""
    calls: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        raise httpx.ConnectError("connection refused", request=request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    metadata_cache = AsyncMetadataCache(ISSUER, http, clock=FakeClock())
    with pytest.raises(TransportError, match="ConnectError"):
        await metadata_cache.get()
    assert calls == [OPENID_URL]
    await http.aclose()
