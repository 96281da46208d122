"""Shared fixtures: the real test authorization server, the fake clock, and the secret-leak check.

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
from _clock import FakeClock

ISSUED: set[str] = set()
"""Every token value seen in a response of the test authorization server."""

CLIENT_SECRETS = {c["client_secret"] for c in load_clients().values() if c.get("client_secret")}


@pytest.fixture
def clock() -> FakeClock:
    """The fake clock (``_clock.FakeClock``): time moves by hand or by fake sleeps only."""
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
def _no_secret_leaks(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Fail any test whose log records or library exception texts contain a secret.

    Secrets: every token the test authorization server issued (seen by the recording
    clients), the test clients' secrets, and, within each test, the value of every ``Token``
    and the secret of every ``ClientConfig`` built, and every client assertion signed (values
    of 8 characters or more, so that short fixtures like "at-1" do not match ordinary text).
    Exception texts are those of every ``OAuth2TokenManagerError`` created during the test.
    """
    from oauth2_token_manager import ClientConfig, OAuth2TokenManagerError, Token, _client_auth

    made: set[str] = set()
    texts: list[str] = []

    def remember(value: object) -> None:
        if isinstance(value, str) and len(value) >= 8:
            made.add(value)

    token_init = Token.__post_init__

    def token_post_init(self: Token) -> None:
        token_init(self)
        remember(self.value)

    config_init = ClientConfig.__post_init__

    def config_post_init(self: ClientConfig) -> None:
        config_init(self)
        remember(self.client_secret)

    sign = _client_auth._sign_assertion

    def sign_and_remember(*args: Any, **kwargs: Any) -> str:
        assertion = sign(*args, **kwargs)
        remember(assertion)
        return assertion

    def error_init(self: Exception, *args: Any) -> None:
        Exception.__init__(self, *args)
        texts.append(" ".join(str(a) for a in args))

    monkeypatch.setattr(Token, "__post_init__", token_post_init)
    monkeypatch.setattr(ClientConfig, "__post_init__", config_post_init)
    monkeypatch.setattr(_client_auth, "_sign_assertion", sign_and_remember)
    monkeypatch.setattr(OAuth2TokenManagerError, "__init__", error_init)
    caplog.set_level(logging.DEBUG)
    yield
    secrets = {s for s in ISSUED | CLIENT_SECRETS | made if s}
    # ``caplog.records`` holds only the current phase (teardown here): read every phase.
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    for record in records:
        for text in _record_texts(record):
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"a secret leaked into log record {record.name}: {record.msg!r}"
    for text in texts:
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"a secret leaked into an exception message: {text[:60]!r}..."
