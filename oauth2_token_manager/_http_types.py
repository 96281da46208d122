"""Plain values for HTTP exchanges, shared by the async code and its generated sync twin.

Pure: no I/O and no httpx import. ``RawResponse`` is what ``read_bounded`` returns for every
request the managers send; ``safe_url`` and ``failure_reason`` make URLs and transport error
messages fit for exceptions and logs (no query string, fragment or credentials).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MAX_BODY_BYTES", "RawResponse", "failure_reason", "safe_url"]

MAX_BODY_BYTES: Final = 1024 * 1024
"""The largest response body read by default (1 MiB, after content decoding)."""


@dataclasses.dataclass(frozen=True)
class RawResponse:
    """A fully read HTTP response: status, headers (lowercase names), body and URL.

    ``headers`` is a read-only mapping whose names are lowercase; a header sent several times
    appears once, its values joined by ``", "``. ``url`` is the URL the response came from,
    passed through :func:`safe_url`. ``repr`` never shows the body (it may hold tokens).
    """

    status_code: int
    headers: Mapping[str, str]
    content: bytes = dataclasses.field(repr=False)
    url: str

    def __post_init__(self) -> None:
        lowered = {name.lower(): value for name, value in self.headers.items()}
        object.__setattr__(self, "headers", types.MappingProxyType(lowered))

    @property
    def content_type(self) -> str | None:
        """The ``Content-Type`` header as sent (with its parameters), or ``None``."""
        return self.headers.get("content-type")

    @property
    def is_success(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status_code < 300


def safe_url(url: str) -> str:
    """``url`` without query, fragment and user info: ``scheme://host[:port]/path``.

    Fit for error messages and logs. An unparsable URL gives ``"<invalid URL>"``.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def failure_reason(error: BaseException, url: str) -> str:
    """``"ClassName: message"`` for a transport error, with ``url``'s secrets blanked out.

    The full URL is replaced by its :func:`safe_url` form; its query string, fragment and
    password are replaced by ``"***"`` wherever else they appear in the message.
    """
    message = str(error).replace(url, safe_url(url))
    try:
        parts = urlsplit(url)
        secrets = [parts.query, parts.fragment, parts.password or ""]
    except ValueError:
        secrets = []
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    name = type(error).__name__
    return f"{name}: {message}" if message else name
