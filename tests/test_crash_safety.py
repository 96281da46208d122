"""SIGKILL at each step of a refresh with rotation, with DiskStore and RedisStore: the store
stays readable, never holds a token twice, and keeps a working refresh token unless the server
had already rotated it (the documented window)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from _authserver import AuthServer
from _concurrency import disk_recipe, store_factory
from _crash import POINTS, crash_once
from _redis_server import RedisServer, redis_server  # noqa: F401

from oauth2_token_manager import TokenStore

pytestmark = pytest.mark.integration

REPEATS = int(os.environ.get("CRASH_REPEATS", "2"))


def verify(
    auth_server: AuthServer, recipe: Callable[[int], Callable[[], TokenStore]], point: str
) -> None:
    """Kill at ``point`` REPEATS times, each time on a fresh store; check every outcome."""
    for attempt in range(REPEATS):
        result = crash_once(auth_server, recipe(attempt), point)
        assert result.killed, "the child was not killed at the point"
        assert result.readable
        assert result.duplicates == 0
        assert result.refresh_tokens == 1
        assert result.usable is not result.server_rotated


@pytest.mark.parametrize("point", POINTS)
def test_disk_store(auth_server: AuthServer, tmp_path: Path, point: str) -> None:
    """DiskStore after a SIGKILL at each step of a rotation."""
    verify(auth_server, lambda n: disk_recipe(tmp_path / f"{point}-{n}"), point)


@pytest.mark.parametrize("point", [p for p in POINTS if p != "inside_replace"])
def test_redis_store(
    auth_server: AuthServer,
    redis_server: RedisServer,  # noqa: F811
    point: str,
) -> None:
    """RedisStore after a SIGKILL at each step (its rotation is one atomic script)."""
    url = redis_server.url
    verify(auth_server, lambda n: store_factory("redis", f"{url}|crash-{point}-{n}:"), point)
