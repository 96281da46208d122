#!/usr/bin/env bash
# The command-line tool in a shell script: a profile in a TOML file, a token for curl, and the
# stored tokens listed (by hash; only `token` ever prints a token value, straight into curl).
#
# Environment: OAUTH2_ISSUER, OAUTH2_CLIENT_ID, OAUTH2_CLIENT_SECRET (the secret is read by the
# tool from this variable, never written to the file) and API_URL (an API accepting the
# server's tokens with scope api:read at /read). Needs `oauth2-token-manager` on PATH (it is in
# .venv/bin) and curl, or else a python3 for the request. Against the local test servers:
#   PATH="$PWD/.venv/bin:$PATH" python scripts/run_with_authserver.py \
#       python tests/_resource_server.py bash examples/cli_script.sh
set -euo pipefail

: "${OAUTH2_ISSUER:?set OAUTH2_ISSUER}" "${OAUTH2_CLIENT_ID:?set OAUTH2_CLIENT_ID}"
: "${OAUTH2_CLIENT_SECRET:?set OAUTH2_CLIENT_SECRET}" "${API_URL:?set API_URL}"
API_URL="${API_URL%/}"
if ! command -v oauth2-token-manager >/dev/null 2>&1; then
    echo "oauth2-token-manager is not on PATH (try: PATH=\"\$PWD/.venv/bin:\$PATH\")" >&2
    exit 127
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
config="$workdir/config.toml"

# A TOML basic string: backslashes and double quotes escaped.
toml_string() {
    local s="${1//\\/\\\\}"
    printf '"%s"' "${s//\"/\\\"}"
}

cat >"$config" <<EOF
[profiles.demo]
issuer = $(toml_string "$OAUTH2_ISSUER")
client_id = $(toml_string "$OAUTH2_CLIENT_ID")
client_secret_env = "OAUTH2_CLIENT_SECRET"
auth_method = "client_secret_basic"
store = $(toml_string "$workdir/store")
allow_insecure_loopback = true
EOF
echo "1. wrote profile 'demo' to $config:"
sed 's/^/   /' "$config"

# The token goes from the tool straight into the request; it is never echoed. (On a machine
# shared with other users, prefer `curl -H @-` fed by printf: arguments show up in `ps`.)
echo "2. GET $API_URL/read with a token from: oauth2-token-manager token -p demo --scope api:read"
if command -v curl >/dev/null 2>&1; then
    body="$(curl --silent --show-error --fail \
        -H "Authorization: Bearer $(oauth2-token-manager --config "$config" token -p demo --scope api:read)" \
        "$API_URL/read")"
else
    echo "   (curl not found: the request is made with python3 and urllib)"
    token="$(oauth2-token-manager --config "$config" token -p demo --scope api:read)"
    body="$(TOKEN="$token" "${PYTHON:-python3}" -c '
import os, sys, urllib.request
request = urllib.request.Request(
    sys.argv[1], headers={"Authorization": "Bearer " + os.environ["TOKEN"]}
)
with urllib.request.urlopen(request, timeout=10) as response:
    print(response.read().decode())
' "$API_URL/read")"
fi
echo "   -> $body"

echo "3. the same token command again: served from the store in $workdir/store"
oauth2-token-manager --config "$config" token -p demo --scope api:read >/dev/null
echo "4. oauth2-token-manager list -p demo (still one access token):"
oauth2-token-manager --config "$config" list -p demo | sed 's/^/   /'
