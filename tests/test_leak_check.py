"""The suite-wide secret check can fail: a test that logs a token or puts one in a library
exception is reported (run in a subprocess on a throw-away test file)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

LEAKY = """
import logging
from oauth2_token_manager import AccessToken, StoreError

def test_logs_a_token():
    token = AccessToken("a-token-value-that-must-not-leak", "https://i", "c")
    logging.getLogger("app").debug("using %s", token.value)

def test_raises_with_a_token():
    token = AccessToken("another-token-value-that-must-not-leak", "https://i", "c")
    StoreError(f"cannot store {token.value}")

def test_clean():
    token = AccessToken("a-third-token-value", "https://i", "c")
    logging.getLogger("app").debug("using %s", token.short_hash)
"""


def test_leaks_are_reported() -> None:
    """Both leaks fail their test at teardown; the clean test passes."""
    path = Path(__file__).parent / f"test_leaky_{uuid.uuid4().hex}.py"
    path.write_text(LEAKY)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                str(path),
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:randomly",
                "--no-cov",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).parent.parent,
        )
    finally:
        path.unlink()
    assert "3 passed, 2 errors" in result.stdout, result.stdout[-2000:]
    assert "a secret leaked into log record app" in result.stdout
    assert "a secret leaked into an exception message" in result.stdout
