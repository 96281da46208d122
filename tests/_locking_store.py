"""A ``MemoryStore`` with the cross-process lock of a shared store, for the store-lock tests.

``DiskStore`` and ``RedisStore`` judge a lock's lease on real time (diskcache's expiry, a Redis
key's TTL); this one reads ``monotonic``, which a test passes as ``FakeClock.monotonic`` to wait
out a lease without waiting. It counts busy answers and renewals, and can call a hook on each.
"""

from __future__ import annotations

from collections.abc import Callable

from oauth2_token_manager import MemoryStore


class LockingMemoryStore(MemoryStore):
    """``try_lock``/``renew_lock``/``unlock`` as the ``LockingTokenStore`` protocol says, in
    memory. ``dead_holder(lease)`` makes the next lock asked for already held by a holder that
    died: it frees itself when that lease runs out."""

    def __init__(self, clock: Callable[[], float], monotonic: Callable[[], float]) -> None:
        super().__init__(clock=clock)
        self.monotonic = monotonic
        self.held: dict[str, tuple[str, float]] = {}
        self.busy = 0
        self.renewals = 0
        self.on_busy: Callable[[], None] | None = None
        self.on_renew: Callable[[str], None] | None = None
        self._dead_lease: float | None = None

    def dead_holder(self, lease: float) -> None:
        """The next lock asked for is found held by a crashed holder for ``lease`` seconds."""
        self._dead_lease = lease

    def holder(self, name: str) -> str | None:
        """Who holds lock ``name`` now (``None``: free, or its lease ran out)."""
        held = self.held.get(name)
        return held[0] if held is not None and held[1] > self.monotonic() else None

    def try_lock(self, name: str, owner: str, lease: float) -> bool:
        if self._dead_lease is not None:
            self.held[name] = ("dead-holder", self.monotonic() + self._dead_lease)
            self._dead_lease = None
        if self.holder(name) not in (None, owner):
            self.busy += 1
            if self.on_busy is not None:
                self.on_busy()
            return False
        self.held[name] = (owner, self.monotonic() + lease)
        return True

    def renew_lock(self, name: str, owner: str, lease: float) -> bool:
        if self.holder(name) != owner:
            return False
        self.held[name] = (owner, self.monotonic() + lease)
        self.renewals += 1
        if self.on_renew is not None:
            self.on_renew(name)
        return True

    def unlock(self, name: str, owner: str) -> None:
        if self.holder(name) == owner:
            del self.held[name]
