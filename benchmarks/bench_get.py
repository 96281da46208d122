"""``get`` on a cached token, with many tokens stored: memory and disk stores.

Prints a table of the median cost of one ``AccessTokenManager.get`` that is served from the
store (no HTTP), with 10, 10 000 and 1 000 000 other tokens in a ``MemoryStore`` and 10 and
100 000 in a ``DiskStore``. Targets (issue 2): memory ≤ 2 µs and at most 1.2x slower at one
million than at ten; disk ≤ 30 µs.

Usage: python benchmarks/bench_get.py [--quick]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from oauth2_token_manager import (
    AccessToken,
    AccessTokenManager,
    ClientConfig,
    DiskStore,
    Issuer,
    MemoryStore,
    TokenStore,
)

ISSUER = "https://as.example"
CLIENT = ClientConfig("bench-client", "secret")
METADATA = {"token_endpoint": f"{ISSUER}/token"}


def fill(store: TokenStore, count: int, now: float) -> None:
    """``count`` tokens of other subjects and scopes, plus the one the benchmark asks for."""
    for i in range(count):
        store.put(
            AccessToken(
                f"token-{i}",
                ISSUER,
                CLIENT.client_id,
                subject=f"user-{i % 50_000}",
                scopes=frozenset({f"scope-{i % 7}", "read"}),
                expires_at=now + 3600,
                issued_at=now,
            )
        )
    store.put(
        AccessToken(
            "the-token",
            ISSUER,
            CLIENT.client_id,
            scopes=frozenset({"read"}),
            expires_at=now + 3600,
            issued_at=now,
        )
    )


def median_per_call(call: Callable[[], object], *, batch: int, batches: int) -> float:
    """Median over ``batches`` of the mean seconds per call in a batch."""
    samples = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(batch):
            call()
        samples.append((time.perf_counter() - start) / batch)
    return statistics.median(samples)


def measure(store: TokenStore, count: int, *, batch: int, batches: int) -> tuple[float, float]:
    now = time.time()
    started = time.perf_counter()
    fill(store, count, now)
    fill_seconds = time.perf_counter() - started
    issuer = Issuer(ISSUER, CLIENT, store=store, discovery=False, metadata=METADATA)
    manager = AccessTokenManager(issuer)
    scopes = ["read"]
    assert manager.get(scopes=scopes).value == "the-token"
    cost = median_per_call(lambda: manager.get(scopes=scopes), batch=batch, batches=batches)
    issuer.close()
    return cost, fill_seconds


def main() -> None:
    quick = "--quick" in sys.argv
    rows: list[tuple[str, int, float, float]] = []
    for count in (10, 10_000) if quick else (10, 10_000, 1_000_000):
        cost, fill_s = measure(MemoryStore(), count, batch=2000, batches=100)
        rows.append(("memory", count, cost, fill_s))
    for count in (10, 1_000) if quick else (10, 100_000):
        with tempfile.TemporaryDirectory() as directory:
            store = DiskStore(directory)
            cost, fill_s = measure(store, count, batch=200, batches=50)
            store.close()
        rows.append(("disk", count, cost, fill_s))
    print(f"{'store':<8}{'stored tokens':>15}{'get (median)':>15}{'fill time':>12}")
    for name, count, cost, fill_s in rows:
        print(f"{name:<8}{count:>15,}{cost * 1e6:>12.2f} µs{fill_s:>10.1f} s")
    memory = [r for r in rows if r[0] == "memory"]
    print(f"memory: largest / smallest = {memory[-1][2] / memory[0][2]:.2f}x")


if __name__ == "__main__":
    main()
