"""Send one request and read its response body, refusing bodies over a size limit.

Every request the managers send goes through :func:`read_bounded`; it is the only place that
turns httpx failures into this library's errors. Written once here; ``_sync/_http.py`` is
generated from it by ``scripts/unasync.py``.
"""

from __future__ import annotations

import httpx

from .._deadline import time_left
from .._exceptions import DeadlineExceededError, InvalidResponseError, TransportError
from .._http_types import MAX_BODY_BYTES, RawResponse, failure_reason, safe_url

__all__ = ["read_bounded"]


def _too_large(endpoint: str, status: int, limit: int) -> InvalidResponseError:
    return InvalidResponseError(
        f"response from {endpoint} is larger than {limit} bytes; not read further",
        endpoint=endpoint,
        status_code=status,
    )


async def _read_body(response: httpx.Response, limit: int, endpoint: str) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(endpoint, response.status_code, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _too_large(endpoint, response.status_code, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _cut_to_deadline(http: httpx.AsyncClient, request: httpx.Request, endpoint: str) -> bool:
    """Give ``request`` the client's timeouts cut to the time left before the operation's
    deadline (``_deadline``); whether the deadline is what limits them."""
    left = time_left()
    if left is None:
        return False
    if left <= 0:
        raise DeadlineExceededError("before the request was sent", endpoint)
    configured = dict(request.extensions.get("timeout") or http.timeout.as_dict())
    cut = {
        phase: left if seconds is None else min(seconds, left)
        for phase, seconds in configured.items()
    }
    request.extensions["timeout"] = cut
    return cut != configured


async def read_bounded(
    http: httpx.AsyncClient,
    request: httpx.Request,
    limit: int = MAX_BODY_BYTES,
    *,
    follow_redirects: bool = False,
) -> RawResponse:
    """Send ``request`` with ``http`` and read at most ``limit`` body bytes (after decoding).

    The response is streamed (``send(..., stream=True)``, exactly what ``http.stream`` does,
    but keeping the prepared request as it is) and closed before returning. Redirects are
    not followed unless asked: a redirected POST would resend credentials elsewhere.

    Each timeout of the client is cut to the time left before the operation's deadline;
    ``DeadlineExceededError`` when that deadline is what ended the exchange.

    Raises ``TransportError(endpoint, reason)`` when the exchange does not complete (connect
    error, timeout, protocol error, too many redirects), ``InvalidResponseError`` for a body
    over ``limit`` or one that cannot be decoded (bad gzip...). The endpoint, reason and
    ``RawResponse.url`` never contain the URL's query string, fragment or credentials.
    Any status is returned as is: callers decide what a non-2xx means.
    """
    endpoint = safe_url(str(request.url))
    cut = _cut_to_deadline(http, request, endpoint)
    try:
        response = await http.send(request, stream=True, follow_redirects=follow_redirects)
        try:
            body = await _read_body(response, limit, endpoint)
        finally:
            await response.aclose()
    except httpx.DecodingError as exc:
        raise InvalidResponseError(
            f"response from {endpoint} cannot be decoded: {failure_reason(exc, str(request.url))}",
            endpoint=endpoint,
        ) from None
    except httpx.TimeoutException as exc:
        if cut:
            raise DeadlineExceededError("waiting for the answer", endpoint) from None
        raise TransportError(endpoint, failure_reason(exc, str(request.url))) from None
    except httpx.RequestError as exc:  # TransportError (incl. timeouts), TooManyRedirects
        raise TransportError(endpoint, failure_reason(exc, str(request.url))) from None
    return RawResponse(
        status_code=response.status_code,
        headers=dict(response.headers.items()),
        content=body,
        url=safe_url(str(response.url)),
    )
