"""A private ``redis-server`` for the tests: its own process on a free 127.0.0.1 port.

Never the machine's shared instance (port 6379): each test session starts one server with no
persistence (``--save '' --appendonly no``) in a temporary directory, waits until it answers
``PING`` and terminates it at the end. Needs the ``redis-server`` binary on ``PATH`` (Debian:
``apt-get install redis-server``).

Tests use the session fixture by importing it: ``from _redis_server import redis_server``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["RedisServer", "redis_server", "start_redis_server"]

_START_TIMEOUT = 10.0
_POLL_INTERVAL = 0.005  # seconds between two PING attempts (at most 10 ms, as asked)
_SHARED_PORT = 6379


@dataclasses.dataclass(frozen=True)
class RedisServer:
    """A running private server."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"


def _free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (never the shared 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != _SHARED_PORT:
            return port


def _pings(port: int) -> bool:
    """Whether a server on ``port`` answers ``PING`` with ``+PONG``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def redis_binary() -> str:
    """The ``redis-server`` binary (``RuntimeError`` when it is not on ``PATH``)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "the Redis tests need the redis-server binary on PATH: "
            "apt-get install redis-server (Debian/Ubuntu)"
        )
    return binary


def redis_command(
    binary: str, port: int, directory: Path, log: Path, *, append_only: bool = False
) -> list[str]:
    """The command line of a private server; ``append_only``: its data survives a restart
    (every write synced to the append-only file in ``directory``)."""
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if append_only else [
        "--appendonly", "no"
    ]  # fmt: skip
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        *persistence,
        "--daemonize",
        "no",
        "--dir",
        str(directory),
        "--logfile",
        str(log),
    ]


def wait_until_ready(process: subprocess.Popen[bytes], port: int) -> bool:
    """Poll ``PING`` until the server answers (True), exits, or ``_START_TIMEOUT`` passes."""
    deadline = time.monotonic() + _START_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        if _pings(port):
            return True
        time.sleep(_POLL_INTERVAL)
    return False


@contextlib.contextmanager
def start_redis_server(attempts: int = 3) -> Iterator[RedisServer]:
    """Start a private server, yield it, terminate it (retrying if its port was taken)."""
    binary = redis_binary()
    with tempfile.TemporaryDirectory(prefix="oauth2tm-redis-") as directory:
        log = Path(directory) / "redis.log"
        for _ in range(attempts):
            port = _free_port()
            command = redis_command(binary, port, Path(directory), log)
            with open(log.with_suffix(".err"), "ab") as errors:
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors
                )
            try:
                if not wait_until_ready(process, port):
                    if process.poll() is None:
                        raise RuntimeError(
                            f"redis-server did not answer PING on port {port} "
                            f"within {_START_TIMEOUT:.0f} s"
                        )
                    continue  # exited (most likely the port was taken meanwhile): retry
                yield RedisServer("127.0.0.1", port, process, log)
                return
            finally:
                _stop(process)
        text = "".join(
            path.read_text(errors="replace")[-2000:]
            for path in (log, log.with_suffix(".err"))
            if path.exists()
        )
        raise RuntimeError(f"redis-server failed to start {attempts} times; its output:\n{text}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for the whole test session."""
    with start_redis_server() as server:
        yield server
