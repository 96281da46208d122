# Shared set-up for scripts/test and scripts/demo: a virtualenv with the package and its dev
# tools, and the npm test authorization server. Idempotent; sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"
# Reinstall only when pyproject.toml changed since the last install.
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$VPY" -m pip install --quiet --upgrade pip
  "$VPY" -m pip install --quiet -e ".[dev]"
  rm -f .venv/.installed-* && touch "$stamp"
fi
# The tests start private redis-server instances (Debian's package).
if ! command -v redis-server >/dev/null; then
  if command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is required (Debian: apt-get install redis-server)" >&2; exit 1
  fi
fi
command -v node >/dev/null || { echo "node (>= 20.18) and npm are required" >&2; exit 1; }
lock_stamp="tests/authorization_server/node_modules/.ci-$(sha256sum tests/authorization_server/package-lock.json | cut -c1-16)"
if [ ! -f "$lock_stamp" ]; then
  (cd tests/authorization_server && npm ci --no-audit --no-fund --loglevel=error)
  touch "$lock_stamp"
fi
