"""Every example runs, as a user would run it, against the local servers, and leaks no token.

Each example is a subprocess (``python examples/X.py``, ``bash examples/X.sh``) with the
environment it documents, pointed at the test authorization server and a local resource
server. To check that no token value reaches the output, the subprocesses get a
``sitecustomize`` (through ``PYTHONPATH``) that records every token the token endpoint hands
out in that process (and in the processes it starts) to a file; none of them, nor the client
secret, may appear in stdout or stderr.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from _authserver import AuthServer, obtain_refresh_token
from _resource_server import ResourceServer, start_resource_server
from store_contract import FakeClock, StoreContract

from oauth2_token_manager import TokenStore, short_hash

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
VENV_BIN = Path(sysconfig.get_path("scripts"))
CLIENT = "basic-client"
TIMEOUT = 120

TESTED = {
    "quickstart.py",
    "client_credentials.py",
    "refresh_token.py",
    "httpx_sync.py",
    "httpx_async.py",
    "custom_store.py",
    "cli_script.sh",
}

# Loaded by every Python process of an example run: records the tokens the token endpoint
# returns (to the file named by $EXAMPLE_TOKEN_LOG), so the test knows what must not leak.
SITECUSTOMIZE = """
import json
import os


def _record(content):
    try:
        data = json.loads(content)
    except ValueError:
        return
    if not isinstance(data, dict):
        return
    values = [data[k] for k in ("access_token", "refresh_token", "id_token")
              if isinstance(data.get(k), str)]
    if values:
        with open(os.environ["EXAMPLE_TOKEN_LOG"], "a", encoding="utf-8") as log:
            log.write("".join(v + "\\n" for v in values))


def _is_token_endpoint(request):
    return request.method == "POST" and request.url.path.endswith("/token")


try:
    import httpx
except ImportError:  # a python without httpx gets no tokens from the token endpoint
    httpx = None

if httpx is not None and os.environ.get("EXAMPLE_TOKEN_LOG"):
    _send = httpx.Client.send
    _asend = httpx.AsyncClient.send

    def send(self, request, *args, **kwargs):
        response = _send(self, request, *args, **kwargs)
        if _is_token_endpoint(request):
            response.read()
            _record(response.content)
        return response

    async def asend(self, request, *args, **kwargs):
        response = await _asend(self, request, *args, **kwargs)
        if _is_token_endpoint(request):
            await response.aread()
            _record(response.content)
        return response

    httpx.Client.send = send
    httpx.AsyncClient.send = asend
"""


@dataclass
class Result:
    """What an example run printed and which tokens its processes were issued."""

    returncode: int
    stdout: str
    stderr: str
    tokens: set[str]


Runner = Callable[..., Result]


@pytest.fixture
def api(auth_server: AuthServer) -> Iterator[ResourceServer]:
    """A resource server accepting the session authorization server's tokens."""
    secret = auth_server.client_secret(CLIENT)
    assert secret is not None
    with start_resource_server(auth_server.issuer, CLIENT, secret) as server:
        yield server


@pytest.fixture
def run_example(auth_server: AuthServer, api: ResourceServer, tmp_path: Path) -> Runner:
    """Run ``examples/NAME`` with the documented environment; check nothing secret is printed."""
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    token_log = tmp_path / "issued-tokens.txt"
    secret = auth_server.client_secret(CLIENT) or ""

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OAUTH2_", "API_URL"))}
    env.update(
        OAUTH2_ISSUER=auth_server.issuer,
        OAUTH2_CLIENT_ID=CLIENT,
        OAUTH2_CLIENT_SECRET=secret,
        API_URL=api.url,
        PATH=os.pathsep.join([str(VENV_BIN), env.get("PATH", os.defpath)]),
        PYTHONPATH=os.pathsep.join(filter(None, [str(hook_dir), env.get("PYTHONPATH")])),
        EXAMPLE_TOKEN_LOG=str(token_log),
        XDG_CACHE_HOME=str(tmp_path / "cache"),  # quickstart's DiskStore.default()
        XDG_CONFIG_HOME=str(tmp_path / "config"),  # never the user's CLI configuration
    )

    def run(
        name: str,
        extra_env: Mapping[str, str] | None = None,
        secrets: tuple[str, ...] = (),
    ) -> Result:
        script = EXAMPLES / name
        if name.endswith(".sh"):
            command = [shutil.which("bash", path=env["PATH"]) or "bash", str(script)]
        else:
            command = [sys.executable, str(script)]
        token_log.unlink(missing_ok=True)
        proc = subprocess.run(
            command,
            env={**env, **(extra_env or {})},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        issued = token_log.read_text(encoding="utf-8") if token_log.exists() else ""
        tokens = set(issued.split())
        output = proc.stdout + proc.stderr
        # Checked before anything prints the output: a failure names hashes, never values.
        leaked = sorted(short_hash(s) for s in {*tokens, *secrets, secret} if s in output)
        assert not leaked, f"{name} printed token(s) or the client secret: {leaked}"
        assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{output}"
        assert tokens, f"{name}: the token recorder saw no token (the leak check saw nothing)"
        return Result(proc.returncode, proc.stdout, proc.stderr, tokens)

    return run


def test_every_example_has_a_test() -> None:
    """Each file in examples/ is run by a test of this module."""
    found = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh")}
    assert found == TESTED


def test_quickstart(run_example: Runner) -> None:
    """quickstart.py caches on disk (also for a new process), introspects, revokes, deletes."""
    result = run_example("quickstart.py")
    assert "a new process got it from disk without a token request: True" in result.stdout
    assert "revoked: the server now says active=False" in result.stdout
    assert "deleted (revoked at the server first): True" in result.stdout


def test_client_credentials(run_example: Runner) -> None:
    """client_credentials.py gets one token per scope set and then serves both from memory."""
    result = run_example("client_credentials.py")
    assert "both scope sets again: the same two tokens from the store: True" in result.stdout
    assert result.stdout.count("token requests so far: 2") == 2
    assert "stored access tokens: 2" in result.stdout
    assert len(result.tokens) == 2


def test_refresh_token(run_example: Runner, auth_server: AuthServer) -> None:
    """refresh_token.py registers alice's refresh token, refreshes narrowed, shows rotation."""
    tokens = obtain_refresh_token(auth_server, CLIENT)
    given = tuple(v for k, v in tokens.items() if k.endswith("_token") and isinstance(v, str))
    result = run_example(
        "refresh_token.py",
        extra_env={"OAUTH2_REFRESH_TOKEN": tokens["refresh_token"], "OAUTH2_SUBJECT": "alice"},
        secrets=given,
    )
    assert "registered the refresh token of 'alice'" in result.stdout
    assert "the access token has 'api:read' only" in result.stdout
    assert "rotated by the server and replaced in the store: True" in result.stdout
    assert "get again: same access token from the store: True" in result.stdout


def test_httpx_sync(run_example: Runner, api: ResourceServer) -> None:
    """httpx_sync.py calls /read twice with TokenAuth: two 200s, one token request."""
    result = run_example("httpx_sync.py")
    assert result.stdout.count("/read -> 200 {'ok': True") == 2
    assert "token requests so far: 1" in result.stdout
    assert api.requests == [("GET", "/read", True)] * 2


def test_httpx_async(run_example: Runner, api: ResourceServer) -> None:
    """httpx_async.py sends five concurrent requests with AsyncTokenAuth on one token."""
    result = run_example("httpx_async.py")
    assert result.stdout.count(": 200 {'ok': True") == 5
    assert "token requests for all 5: 1" in result.stdout
    assert api.requests == [("GET", "/read", True)] * 5
    assert len(result.tokens) == 1


def test_custom_store(run_example: Runner) -> None:
    """custom_store.py caches, revokes and replaces a token in its own DictStore."""
    result = run_example("custom_store.py")
    assert "DictStore is a TokenStore: True" in result.stdout
    assert "second get served from the DictStore: True" in result.stdout
    assert "on the DictStore's revocation list: True" in result.stdout
    assert "the next get obtains a new token: True" in result.stdout


def test_cli_script(run_example: Runner, api: ResourceServer) -> None:
    """cli_script.sh feeds `oauth2-token-manager token` to curl and lists one stored token."""
    result = run_example("cli_script.sh")
    assert '-> {"ok": true' in result.stdout
    assert '"client_id": "basic-client", "scope": "api:read"' in result.stdout
    assert "1 token" in result.stdout
    assert api.requests == [("GET", "/read", True)]
    assert len(result.tokens) == 1


def test_cli_script_without_curl(run_example: Runner, api: ResourceServer, tmp_path: Path) -> None:
    """Without curl on PATH, cli_script.sh makes the request with python3 and urllib."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "mktemp", "rm", "cat", "sed"):
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    cli = shutil.which("oauth2-token-manager", path=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    cli_dir = [str(Path(cli).parent)] if cli else []
    path = os.pathsep.join([str(VENV_BIN), *cli_dir, str(bin_dir)])
    assert shutil.which("curl", path=path) is None
    result = run_example("cli_script.sh", extra_env={"PATH": path})
    assert "curl not found" in result.stdout
    assert '-> {"ok": true' in result.stdout
    assert api.requests == [("GET", "/read", True)]


@functools.cache
def _load_example(name: str) -> ModuleType:
    """Import ``examples/NAME`` as a module (its ``main`` does not run)."""
    spec = importlib.util.spec_from_file_location(f"example_{Path(name).stem}", EXAMPLES / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class TestCustomStoreContract(StoreContract):
    """The DictStore of examples/custom_store.py keeps the whole store contract."""

    def make_store(self, clock: FakeClock, retain_expired: float = 0.0) -> TokenStore:
        """A fresh DictStore."""
        store: TokenStore = _load_example("custom_store.py").DictStore(
            retain_expired=retain_expired, clock=clock
        )
        return store

    def stored_keys(self, store: TokenStore) -> list[str]:
        """The keys of its three dicts."""
        keys = [*vars(store)["_tokens"], *vars(store)["_revoked"]]
        return keys + [str(group) for group in vars(store)["_groups"]]
