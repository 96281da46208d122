"""Run a command with the local test authorization server (npm oidc-provider) started.

The command sees ``OAUTH2_ISSUER``, ``OAUTH2_CLIENT_ID`` and ``OAUTH2_CLIENT_SECRET`` (a
client_secret_basic client of that server). The server is stopped when the command ends.

Usage: python scripts/run_with_authserver.py COMMAND [ARGS...]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _authserver import start_auth_server


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    with start_auth_server() as server:
        env = dict(os.environ)
        env["OAUTH2_ISSUER"] = server.issuer
        env["OAUTH2_CLIENT_ID"] = "basic-client"
        env["OAUTH2_CLIENT_SECRET"] = server.client_secret("basic-client") or ""
        print(f"(test authorization server listening at {server.issuer})", flush=True)
        return subprocess.call(argv, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
