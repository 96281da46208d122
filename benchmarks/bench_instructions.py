"""CPU instructions per call of the hot paths, counted by valgrind: repeatable where time is not.

On a shared 2-core machine the wall-clock figures of ``bench_get.py`` move by 2x from one run
to the next; instruction counts do not (same interpreter, same code, ``PYTHONHASHSEED=0``).
Each scenario runs under ``valgrind --tool=callgrind`` twice, with 2 000 and 12 000 calls, and
the difference divided by 10 000 is the cost of one call, start-up excluded:

- ``get, MemoryStore`` / ``get, DiskStore``: ``AccessTokenManager.get`` on a cached token;
- ``get, async MemoryStore``: ``AsyncAccessTokenManager.get`` on a cached token;
- ``TokenAuth, per request``: the auth flow adding the header of a cached token.

``--against DIR`` counts a second checkout too (put first on ``PYTHONPATH``), for A/B: e.g.
``git worktree add /tmp/before HEAD~5`` then
``python benchmarks/bench_instructions.py --against /tmp/before``.

Usage: python benchmarks/bench_instructions.py [--against DIR]   (needs valgrind)
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {
    "memory": "get, MemoryStore",
    "disk": "get, DiskStore",
    "async": "get, async MemoryStore",
    "auth": "TokenAuth, per request",
}
SMALL, LARGE = 2_000, 12_000


def run(mode: str, calls: int) -> None:
    """The measured loop (in the child process under valgrind)."""
    import httpx

    from oauth2_token_manager import (
        AccessToken,
        AccessTokenManager,
        AsyncAccessTokenManager,
        AsyncIssuer,
        ClientConfig,
        DiskStore,
        Issuer,
        MemoryStore,
    )

    now = 1_700_000_000.0

    def clock() -> float:
        return now

    issuer_url, client = "https://as.example", ClientConfig("bench-client", "secret")
    options = {"discovery": False, "metadata": {"token_endpoint": f"{issuer_url}/token"}}
    store = (
        DiskStore(tempfile.mkdtemp(), clock=clock) if mode == "disk" else MemoryStore(clock=clock)
    )
    store.put(
        AccessToken(
            "the-token",
            issuer_url,
            client.client_id,
            scopes=frozenset({"read"}),
            expires_at=now + 3600,
            issued_at=now,
        )
    )
    scopes = ["read"]
    if mode == "async":
        manager = AsyncAccessTokenManager(
            AsyncIssuer(issuer_url, client, store=store, clock=clock, **options)
        )

        async def loop() -> None:
            get = manager.get
            for _ in range(calls):
                await get(scopes=scopes)

        asyncio.run(loop())
        return
    sync = AccessTokenManager(Issuer(issuer_url, client, store=store, clock=clock, **options))
    if mode == "auth":
        auth = sync.auth(scopes=scopes)
        request = httpx.Request("GET", "https://api.example/x")
        for _ in range(calls):
            next(auth.sync_auth_flow(request))
        return
    get = sync.get
    for _ in range(calls):
        get(scopes=scopes)


def count(checkout: Path, mode: str, calls: int) -> int:
    """Instructions of one child run under callgrind."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(checkout)}
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            mode,
            str(calls),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"valgrind printed no count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_call(checkout: Path, mode: str) -> float:
    return (count(checkout, mode, LARGE) - count(checkout, mode, SMALL)) / (LARGE - SMALL)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        run(argv[1], int(argv[2]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (Debian: apt-get install valgrind)")
    checkouts = {"this checkout": ROOT}
    if "--against" in argv:
        checkouts["--against"] = Path(argv[argv.index("--against") + 1]).resolve()
    names = list(checkouts)
    print(f"{'instructions per call':<26}" + "".join(f"{n:>16}" for n in names))
    for mode, label in SCENARIOS.items():
        figures = [per_call(checkouts[n], mode) for n in names]
        row = "".join(f"{f:>16,.0f}" for f in figures)
        if len(figures) == 2:
            row += f"   {figures[0] / figures[1]:.3f}x"
        print(f"{label:<26}{row}")


if __name__ == "__main__":
    main(sys.argv[1:])
