"""``LoopDriven``: the sync store protocol over an ``AsyncRedisStore``, each call run to
completion on a private event loop, so the shared store contract runs against the async
store too."""

from __future__ import annotations

import asyncio
from typing import Any

from oauth2_token_manager._models import GroupKey, Token
from oauth2_token_manager._stores import Page, TokenQuery
from oauth2_token_manager._stores._async_redis import AsyncRedisStore


class LoopDriven:
    """A sync store over an ``AsyncRedisStore``: each call runs on a private event loop."""

    def __init__(self, store: AsyncRedisStore) -> None:
        self.store = store
        self.loop = asyncio.new_event_loop()

    def __repr__(self) -> str:
        return repr(self.store)

    @property
    def prefix(self) -> str:
        return self.store.prefix

    @property
    def client(self) -> Any:
        return self.store.client

    def close(self) -> None:
        self.loop.run_until_complete(self.store.aclose())
        self.loop.close()

    def _run(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.loop.run_until_complete(getattr(self.store, name)(*args, **kwargs))

    def put(self, token: Token) -> None:
        self._run("put", token)

    def get(self, token_hash: str) -> Token | None:
        return self._run("get", token_hash)

    def find(self, group: GroupKey, scope_key: str | None) -> list[Token]:
        return self._run("find", group, scope_key)

    def replace(self, old_hash: str, new: Token) -> None:
        self._run("replace", old_hash, new)

    def delete(self, token_hash: str) -> Token | None:
        return self._run("delete", token_hash)

    def revoke(self, token_hash: str, until: float) -> None:
        self._run("revoke", token_hash, until)

    def is_revoked(self, token_hash: str) -> bool:
        return self._run("is_revoked", token_hash)

    def list(self, query: TokenQuery) -> Page:
        return self._run("list", query)

    def expunge_expired(self, now: float, query: TokenQuery | None = None) -> int:
        return self._run("expunge_expired", now, query)

    def try_lock(self, name: str, owner: str, lease: float) -> bool:
        return self._run("try_lock", name, owner, lease)

    def renew_lock(self, name: str, owner: str, lease: float) -> bool:
        return self._run("renew_lock", name, owner, lease)

    def unlock(self, name: str, owner: str) -> None:
        self._run("unlock", name, owner)

    def rotate_encryption(self, *, encrypt_plaintext: bool = False) -> int:
        return self._run("rotate_encryption", encrypt_plaintext=encrypt_plaintext)
