"""A server that accepts connections and never answers, for the bounded-wait tests.

A listening TCP socket that is never ``accept``ed: the kernel completes each handshake and
buffers the request, and no answer ever comes (what a hung server looks like to a client).
Closing it at the end resets the waiting connections.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:PORT``) of a listener that never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
