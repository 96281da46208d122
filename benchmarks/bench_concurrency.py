"""Many callers, one token request: counts and times against the real test server.

Starts the local test authorization server (rotation on, token answers 100 ms late so every
caller arrives while the first request is in flight) and a private redis-server, then runs
the scenarios of ``tests/_concurrency.py``: the same expired token wanted at once by 200
asyncio tasks, 64 threads, 8 processes on one DiskStore and 8 on one RedisStore, with 1 and 4
scope sets; and a SIGKILLed lock holder. Prints token requests, invalid_grant answers, the
time until every caller had its token and, for tasks, the longest single task step (how long
one caller blocked the event loop) and the longest loop iteration (every step that was ready
at once); then the latency of ``get`` on a cached token with each store.

Usage: python benchmarks/bench_concurrency.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _authserver import start_auth_server
from _concurrency import (
    Outcome,
    disk_recipe,
    run_killed_holder,
    run_processes,
    run_tasks,
    run_threads,
    store_factory,
)

from oauth2_token_manager import AccessToken, AccessTokenManager, ClientConfig, Issuer


def row(name: str, outcome: Outcome) -> str:
    step = f"{outcome.max_stall_ms:.2f}" if outcome.max_stall_ms is not None else "-"
    loop = f"{outcome.max_iteration_ms:.1f}" if outcome.max_iteration_ms is not None else "-"
    return (
        f"{name:<34}{outcome.callers:>8}{outcome.scope_sets:>7}{outcome.token_requests:>10}"
        f"{outcome.invalid_grants:>10}{len(outcome.failures) + outcome.wrong_scopes:>8}"
        f"{outcome.seconds * 1000:>11.0f}{step:>10}{loop:>10}"
        + (
            f"  (served {outcome.lock_wait:.2f} s after the dead holder took the lock)"
            if outcome.lock_wait is not None
            else ""
        )
    )


def cached_get_latency(store: object) -> float:
    """Median µs of ``get`` served from ``store`` (a stored, valid token)."""
    now = time.time()
    store.put(  # type: ignore[attr-defined]
        AccessToken(
            "bench",
            "https://as.example",
            "c",
            scopes=frozenset({"read"}),
            expires_at=now + 3600,
            issued_at=now,
        )
    )
    issuer = Issuer(
        "https://as.example",
        ClientConfig("c", "s"),
        store=store,  # type: ignore[arg-type]
        discovery=False,
        metadata={"token_endpoint": "https://as.example/token"},
    )
    manager = AccessTokenManager(issuer)
    samples = []
    for _ in range(30):
        start = time.perf_counter()
        for _ in range(200):
            manager.get(scopes=["read"])
        samples.append((time.perf_counter() - start) / 200)
    issuer.close()
    return statistics.median(samples) * 1e6


def main() -> None:
    from _redis_server import start_redis_server

    with start_redis_server() as redis:
        run(redis.url)


def run(redis_url: str) -> None:
    print(
        f"{'scenario':<34}{'callers':>8}{'scopes':>7}{'requests':>10}{'inv_grant':>10}"
        f"{'failed':>8}{'all (ms)':>11}{'step ms':>10}{'iter ms':>10}"
    )
    with start_auth_server(rotate_refresh_token=True, AS_TOKEN_DELAY_MS=100) as server:
        for sets in (1, 4):
            print(row("asyncio tasks, MemoryStore", run_tasks(server, 200, sets)))
            recipe = store_factory("redis", f"{redis_url}|tasks-{sets}:")
            print(row("asyncio tasks, AsyncRedisStore", run_tasks(server, 200, sets, recipe)))
            print(row("threads, MemoryStore", run_threads(server, 64, sets)))
            with tempfile.TemporaryDirectory() as directory:
                print(
                    row(
                        "processes, DiskStore",
                        run_processes(server, disk_recipe(Path(directory)), 8, sets),
                    )
                )
            recipe = store_factory("redis", f"{redis_url}|bench-{sets}:")
            print(row("processes, RedisStore", run_processes(server, recipe, 8, sets)))
        with tempfile.TemporaryDirectory() as directory:
            outcome = run_killed_holder(server, disk_recipe(Path(directory)), lease=1.5)
            print(row("SIGKILLed holder, DiskStore 1.5 s", outcome))
        recipe = store_factory("redis", f"{redis_url}|bench-kill:")
        print(row("SIGKILLed holder, RedisStore 1.5 s", run_killed_holder(server, recipe, 1.5)))
    print("\nget on a cached token")
    from oauth2_token_manager import DiskStore, MemoryStore

    print(f"  MemoryStore  {cached_get_latency(MemoryStore()):8.1f} µs")
    with tempfile.TemporaryDirectory() as directory:
        print(f"  DiskStore    {cached_get_latency(DiskStore(directory)):8.1f} µs")
    redis_store = store_factory("redis", f"{redis_url}|lat:")()
    print(f"  RedisStore   {cached_get_latency(redis_store):8.1f} µs (one GET round trip)")


if __name__ == "__main__":
    main()
