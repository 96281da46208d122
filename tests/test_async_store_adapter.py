"""``AsyncStoreAdapter`` hands every call to the sync store, arguments and results unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from store_contract import FakeClock, make_token

from oauth2_token_manager._exceptions import TokenRevokedError
from oauth2_token_manager._stores import (
    AsyncStoreAdapter,
    AsyncTokenStore,
    MemoryStore,
    Page,
    TokenQuery,
    TokenStore,
    scoped_expunge,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """Run these tests on asyncio."""
    return "asyncio"


class RecordingStore:
    """A sync store that records each call and answers with a marker object."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.results: dict[str, Any] = {}

    def _record(self, name: str, *args: Any) -> Any:
        self.calls.append((name, args))
        return self.results.get(name)

    def put(self, token: Any) -> None:
        self._record("put", token)

    def get(self, token_hash: str) -> Any:
        return self._record("get", token_hash)

    def find(self, group: Any, scope_key: str | None) -> Any:
        return self._record("find", group, scope_key)

    def replace(self, old_hash: str, new: Any) -> None:
        self._record("replace", old_hash, new)

    def delete(self, token_hash: str) -> Any:
        return self._record("delete", token_hash)

    def revoke(self, token_hash: str, until: float) -> None:
        self._record("revoke", token_hash, until)

    def is_revoked(self, token_hash: str) -> Any:
        return self._record("is_revoked", token_hash)

    def list(self, query: Any) -> Any:
        return self._record("list", query)

    def expunge_expired(self, *args: Any) -> Any:  # (now) or (now, query)
        return self._record("expunge_expired", *args)


TOKEN = make_token()
QUERY = TokenQuery(subject="alice", limit=5)
CALLS: list[tuple[str, tuple[Any, ...], bool]] = [
    # (method, arguments, whether it returns the store's answer)
    ("put", (TOKEN,), False),
    ("get", (TOKEN.token_hash,), True),
    ("find", (TOKEN.group, "read"), True),
    ("find", (TOKEN.group, None), True),
    ("replace", ("0" * 64, TOKEN), False),
    ("delete", (TOKEN.token_hash,), True),
    ("revoke", (TOKEN.token_hash, 123.0), False),
    ("is_revoked", (TOKEN.token_hash,), True),
    ("list", (QUERY,), True),
    ("expunge_expired", (456.0,), True),
    ("expunge_expired", (456.0, QUERY), True),
]


def test_every_protocol_method_is_covered() -> None:
    """The delegation table below names every method of ``TokenStore``."""
    protocol = {name for name in vars(TokenStore) if not name.startswith("_")}
    assert {name for name, _, _ in CALLS} == protocol


@pytest.mark.parametrize(("name", "args", "returns"), CALLS)
async def test_delegates_each_method(name: str, args: tuple[Any, ...], returns: bool) -> None:
    """Each coroutine calls the sync method once, same arguments, and returns its result."""
    sync = RecordingStore()
    marker = object()
    sync.results[name] = marker
    adapter = AsyncStoreAdapter(sync)
    result = await getattr(adapter, name)(*args)
    assert sync.calls == [(name, args)]
    assert result is (marker if returns else None)


async def test_exceptions_propagate() -> None:
    """An error of the sync store reaches the awaiting caller unchanged."""
    store = MemoryStore(clock=FakeClock())
    adapter = AsyncStoreAdapter(store)
    await adapter.revoke(TOKEN.token_hash, FakeClock().now + 60)
    with pytest.raises(TokenRevokedError):
        await adapter.put(TOKEN)


async def test_works_with_a_real_store() -> None:
    """Over a ``MemoryStore`` the adapter behaves as the store does."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    adapter = AsyncStoreAdapter(store)
    assert isinstance(adapter, AsyncTokenStore)
    assert adapter.sync is store
    new = make_token(updated_at=1.0)
    await adapter.put(TOKEN)
    assert await adapter.find(TOKEN.group, "read") == [TOKEN]
    await adapter.replace(TOKEN.token_hash, new)
    assert await adapter.get(TOKEN.token_hash) is None
    assert await adapter.find(TOKEN.group, None) == [new]
    page = await adapter.list(TokenQuery())
    assert isinstance(page, Page)
    assert page.total == 1
    assert await adapter.delete(new.token_hash) == new
    assert await adapter.expunge_expired(clock.now) == 0
    assert not await adapter.is_revoked(new.token_hash)
    assert "MemoryStore" in repr(adapter)


class _OldStore(MemoryStore):
    """A store whose ``expunge_expired`` predates ``query``."""

    def expunge_expired(self, now: float) -> int:  # type: ignore[override]
        return super().expunge_expired(now)


def test_scoped_expunge_tells_stores_that_take_a_query() -> None:
    """Shipped stores (and the adapter over one) take ``query``; an older custom store, also
    behind the adapter, does not."""
    clock = FakeClock()
    assert scoped_expunge(MemoryStore(clock=clock))
    assert scoped_expunge(AsyncStoreAdapter(MemoryStore(clock=clock)))
    assert not scoped_expunge(_OldStore(clock=clock))
    assert not scoped_expunge(AsyncStoreAdapter(_OldStore(clock=clock)))
