"""Switch off one concurrency mechanism of the library, for the tests that prove they can fail.

Each concurrency test runs its scenario twice: as is, where it must pass, and with the
mechanism it is about made a no-op here, where the failure it guards against must be seen
(more than one token request, an ``invalid_grant``, a lock left behind ...). A test that still
passed without its mechanism would prove nothing. Each function takes pytest's
``monkeypatch``, so that the library is whole again after the test.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from oauth2_token_manager import AsyncIssuer, Issuer
from oauth2_token_manager._async import _locks as async_locks
from oauth2_token_manager._async import _manager as async_manager
from oauth2_token_manager._sync import _locks as sync_locks
from oauth2_token_manager._sync import _manager as sync_manager


def _free(*args: Any, **kwargs: Any) -> contextlib.nullcontext[None]:
    """A lock that is always free: ``with`` and ``async with`` enter at once."""
    return contextlib.nullcontext()


def without_keyed_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process single-flight off: every ``hold``/``try_hold`` of a key is granted at once."""
    for cls in (async_locks.AsyncKeyedLocks, sync_locks.KeyedLocks):
        monkeypatch.setattr(cls, "hold", _free)
        monkeypatch.setattr(cls, "try_hold", _free)


def without_store_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cross-process single-flight off: ``acquire`` succeeds without asking the store."""

    async def acquire_async(self: Any, *, wait: bool = True) -> bool:
        return True

    async def release_async(self: Any) -> None:
        return None

    def acquire_sync(self: Any, *, wait: bool = True) -> bool:
        return True

    def release_sync(self: Any) -> None:
        return None

    monkeypatch.setattr(async_locks.AsyncStoreLock, "acquire", acquire_async)
    monkeypatch.setattr(async_locks.AsyncStoreLock, "release", release_async)
    monkeypatch.setattr(sync_locks.StoreLock, "acquire", acquire_sync)
    monkeypatch.setattr(sync_locks.StoreLock, "release", release_sync)


def without_lease_renewal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A held store lock is never renewed: its lease runs out while the holder works."""

    async def renew_async(self: Any) -> None:
        return None

    def renew_sync(self: Any) -> None:
        return None

    monkeypatch.setattr(async_locks.AsyncStoreLock, "_renew", renew_async)
    monkeypatch.setattr(sync_locks.StoreLock, "_renew", renew_sync)


def without_failure_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed token request is never served again: every caller asks the server."""
    for cls in (AsyncIssuer, Issuer):
        monkeypatch.setattr(cls, "recent_failure", lambda self, key: None)


def without_waiter_cleanup(monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiter cancelled while waiting for a key's lock stays counted as one of its users."""

    async def enter(self: Any) -> None:
        if self._entry is not None:
            return
        entry = self._owner._join(self._key)
        await entry.lock.__aenter__()  # no "leave the table if cancelled"
        self._entry = entry

    monkeypatch.setattr(async_locks._AsyncHeld, "__aenter__", enter)


def without_grant_reread(monkeypatch: pytest.MonkeyPatch | None = None) -> None:
    """An ``invalid_grant`` drops the refresh token without reading the store again first (no
    retry with a token another caller stored meanwhile). The proofs of the locks switch it off
    too: it would serve the losers of a race the locks exist to prevent, hiding the failure
    from the callers (the server still counts every ``invalid_grant``). Without
    ``monkeypatch`` (in a child process) the change is for good."""

    def never(spent: Any, stored: Any) -> bool:
        return False

    for module in (async_manager, sync_manager):
        if monkeypatch is None:
            module.grant_moved_on = never  # type: ignore[attr-defined]
        else:
            monkeypatch.setattr(module, "grant_moved_on", never)
