"""Shared fixtures: the real test authorization server, a fake clock, and the secret-leak check.

Every integration test runs with DEBUG logging captured; afterwards the records (messages,
arguments and exception texts) are searched for every token the server issued during the test
and for the client secrets. One hit fails the test.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _authserver import AuthServer, load_clients, start_auth_server

ISSUED: set[str] = set()
"""Every token value seen in a response of the test authorization server."""

CLIENT_SECRETS = {c["client_secret"] for c in load_clients().values() if c.get("client_secret")}


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A clock a test moves by hand (no sleeps)."""
    return FakeClock()


def _remember_tokens(content: bytes) -> None:
    try:
        data = json.loads(content)
    except ValueError:
        return
    if isinstance(data, dict):
        for name in ("access_token", "refresh_token", "id_token"):
            if isinstance(data.get(name), str):
                ISSUED.add(data[name])


def recording_client(**kwargs: Any) -> httpx.Client:
    """An httpx client that remembers every token it receives (for the leak check)."""

    def hook(response: httpx.Response) -> None:
        response.read()
        _remember_tokens(response.content)

    return httpx.Client(event_hooks={"response": [hook]}, timeout=10, **kwargs)


def recording_async_client(**kwargs: Any) -> httpx.AsyncClient:
    """The async twin of ``recording_client``."""

    async def hook(response: httpx.Response) -> None:
        await response.aread()
        _remember_tokens(response.content)

    return httpx.AsyncClient(event_hooks={"response": [hook]}, timeout=10, **kwargs)


@pytest.fixture(scope="session")
def auth_server() -> Iterator[AuthServer]:
    """The test authorization server with rotation on and one-hour access tokens."""
    with start_auth_server(rotate_refresh_token=True) as server:
        yield server


@pytest.fixture(scope="session")
def auth_server_no_rotation() -> Iterator[AuthServer]:
    """The test authorization server with rotation off."""
    with start_auth_server(rotate_refresh_token=False) as server:
        yield server


def _record_texts(record: logging.LogRecord) -> list[str]:
    texts = [record.getMessage(), repr(record.args)]
    if record.exc_info and record.exc_info[1] is not None:
        texts.append(repr(record.exc_info[1]))
        texts.append(str(record.exc_info[1]))
    return texts


@pytest.fixture(autouse=True)
def _no_secret_in_logs(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """Fail an integration test whose log records contain an issued token or a secret."""
    if request.node.get_closest_marker("integration") is None:
        yield
        return
    caplog.set_level(logging.DEBUG)
    yield
    secrets = ISSUED | CLIENT_SECRETS
    for record in caplog.records:
        for text in _record_texts(record):
            leaked = [s for s in secrets if s and s in text]
            assert not leaked, f"a secret leaked into log record {record.name}: {record.msg!r}"
