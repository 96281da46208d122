"""The two generator types of httpx auth flows, named so that ``scripts/unasync.py`` maps the
async one (``AsyncAuthFlow``) onto the sync one (``AuthFlow``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

__all__ = ["AsyncAuthFlow", "AuthFlow"]

AsyncAuthFlow = AsyncGenerator[httpx.Request, httpx.Response]
AuthFlow = Generator[httpx.Request, httpx.Response, None]
