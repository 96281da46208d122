"""The ``oauth2-token-manager`` command line, run in-process and as a real process.

Every test has its own configuration file and DiskStore under ``tmp_path`` and talks to the real
test authorization server; token requests are counted by the server itself.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _authserver import (
    JWT_CLIENT_PRIVATE_JWK_FILE,
    AuthServer,
    client_credentials_token,
    obtain_refresh_token,
)
from _authserver import introspect as server_introspect

from oauth2_token_manager import AccessToken, DiskStore, token_hash
from oauth2_token_manager.cli import main

pytestmark = pytest.mark.integration

SECRET_ENV = "CLI_TEST_CLIENT_SECRET"
PROG = "oauth2-token-manager"


@dataclass
class Result:
    """What one run of the command printed, and its exit status."""

    status: int
    out: str
    err: str


@dataclass
class Cli:
    """Runs ``main`` in-process against a configuration file written for the test server."""

    server: AuthServer
    config: Path
    store: Path
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch

    def run(self, *argv: str, stdin: str | None = None) -> Result:
        self.capsys.readouterr()  # drop anything printed before
        if stdin is not None:
            self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        status = main(list(argv))
        captured = self.capsys.readouterr()
        return Result(status, captured.out, captured.err)

    def write_config(self, text: str) -> None:
        self.config.write_text(text, encoding="utf-8")


def profile(name: str, server: AuthServer, store: Path, **fields: object) -> str:
    """A ``[profiles.NAME]`` table for the test server (basic-client, secret from the env)."""
    values: dict[str, object] = {
        "issuer": server.issuer,
        "client_id": "basic-client",
        "client_secret_env": SECRET_ENV,
        "allow_insecure_loopback": True,
        "store": str(store),
    }
    values.update(fields)
    lines = [f"[profiles.{name}]"]
    for key, value in values.items():
        lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def toml_value(value: object) -> str:
    """A TOML literal (JSON's strings, numbers, booleans and arrays are TOML too)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def assert_one_line_error(result: Result, status: int) -> str:
    """The run failed with ``status`` and exactly one ``prog: error:`` line on stderr."""
    assert result.status == status, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"{PROG}: error: ")
    assert "Traceback" not in result.err
    return lines[0]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No OAUTH2_TOKEN_MANAGER_* variable of the caller; XDG directories inside tmp_path."""
    for name in list(os.environ):
        if name.startswith("OAUTH2_TOKEN_MANAGER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def cli(
    auth_server: AuthServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Cli]:
    """A config file with profile ``api`` (basic-client) named by OAUTH2_TOKEN_MANAGER_CONFIG."""
    secret = auth_server.client_secret("basic-client")
    assert secret is not None
    monkeypatch.setenv(SECRET_ENV, secret)
    config = tmp_path / "config.toml"
    store = tmp_path / "store"
    config.write_text(profile("api", auth_server, store), encoding="utf-8")
    monkeypatch.setenv("OAUTH2_TOKEN_MANAGER_CONFIG", str(config))
    yield Cli(auth_server, config, store, capsys, monkeypatch)


def listed(cli: Cli, *args: str) -> dict[str, object]:
    """``list --json`` parsed."""
    result = cli.run("list", "-p", "api", "--json", *args)
    assert result.status == 0, result
    data: dict[str, object] = json.loads(result.out)
    return data


# --------------------------------------------------------------------------------------------
# token
# --------------------------------------------------------------------------------------------


def test_token_twice_prints_same_value_with_one_token_request(cli: Cli) -> None:
    """`token` prints only the value; a second call is served by the DiskStore (no request)."""
    before = cli.server.token_counts()
    first = cli.run("token", "-p", "api", "--scope", "api:read")
    second = cli.run("token", "-p", "api", "--scope", "api:read")
    after = cli.server.token_counts()
    assert first.status == second.status == 0
    assert first.out == second.out
    value = first.out.removesuffix("\n")
    assert first.out == value + "\n" and value and "\n" not in value and " " not in value
    assert first.err == second.err == ""
    assert after["client_credentials"] - before["client_credentials"] == 1
    assert after["total"] - before["total"] == 1
    assert server_introspect(cli.server, "basic-client", value)["active"] is True


def test_token_uses_profile_default_scopes_and_global_options_before_command(cli: Cli) -> None:
    """The profile's `scopes` are the default of `token`; options may precede the command."""
    cli.write_config(profile("api", cli.server, cli.store, scopes=["api:read", "api:write"]))
    result = cli.run("-p", "api", "token")
    assert result.status == 0, result
    info = server_introspect(cli.server, "basic-client", result.out.strip())
    assert set(info["scope"].split()) == {"api:read", "api:write"}


def test_token_from_new_processes_makes_one_request(cli: Cli) -> None:
    """Two real processes of the console entry point share the stored token (one request)."""
    env = {**os.environ, "OAUTH2_TOKEN_MANAGER_PROFILE": "api"}
    script = Path(sys.executable).parent / PROG
    command = (
        [str(script)] if script.exists() else [sys.executable, "-m", "oauth2_token_manager.cli"]
    )
    before = cli.server.token_counts()
    runs = [
        subprocess.run(
            [*command, "token", "--scope", "api:read"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for _ in range(2)
    ]
    after = cli.server.token_counts()
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.endswith("\n")
    assert runs[0].stderr == runs[1].stderr == ""
    assert after["total"] - before["total"] == 1


def test_module_entry_point_reports_errors_without_traceback(cli: Cli) -> None:
    """`python -m oauth2_token_manager.cli` exits 2 with one error line for an unknown profile."""
    run = subprocess.run(
        [sys.executable, "-m", "oauth2_token_manager.cli", "token", "-p", "nope"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.startswith(f"{PROG}: error: unknown profile 'nope'")
    assert len(run.stderr.splitlines()) == 1


def test_environment_and_flags_override_the_file_in_order(cli: Cli) -> None:
    """Flags beat OAUTH2_TOKEN_MANAGER_* variables, which beat the profile's fields."""
    cli.write_config(profile("api", cli.server, cli.store, issuer="http://127.0.0.1:9"))
    cli.monkeypatch.setenv("OAUTH2_TOKEN_MANAGER_ISSUER", cli.server.issuer)
    assert cli.run("token", "-p", "api").status == 0  # env beat the file's dead issuer
    result = cli.run("token", "-p", "api", "--issuer", "http://127.0.0.1:9", "--scope", "x")
    assert "127.0.0.1:9" in assert_one_line_error(result, 1)  # the flag beat the env


def test_client_secret_file_with_mode_0600_works(cli: Cli, tmp_path: Path) -> None:
    """A 0600 secret file (with a trailing newline) authenticates the client."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(cli.server.client_secret("basic-client") + "\n", encoding="utf-8")
    secret_file.chmod(0o600)
    cli.monkeypatch.delenv(SECRET_ENV)
    cli.write_config(
        profile("api", cli.server, cli.store, client_secret_file="secret").replace(
            f'client_secret_env = "{SECRET_ENV}"\n', ""
        )
    )
    result = cli.run("token", "-p", "api")
    assert result.status == 0, result


def test_private_key_jwt_from_a_jwk_file(cli: Cli, tmp_path: Path) -> None:
    """private_key_jwt with a JWK file and signing_alg gets a token for jwt-client."""
    key_file = tmp_path / "jwt-client.jwk"
    key_file.write_text(JWT_CLIENT_PRIVATE_JWK_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    key_file.chmod(0o600)
    cli.write_config(
        profile(
            "jwt",
            cli.server,
            cli.store,
            client_id="jwt-client",
            auth_method="private_key_jwt",
            private_key_file=str(key_file),
            signing_alg="ES256",
        )
    )
    result = cli.run("token", "-p", "jwt", "--scope", "api:read")
    assert result.status == 0, result
    info = server_introspect(cli.server, "basic-client", result.out.strip())
    assert info["client_id"] == "jwt-client"


# --------------------------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------------------------


def test_list_table_and_json_show_hashes_never_values(cli: Cli) -> None:
    """`list` shows a table (12-hex hashes) or JSON (full hashes) and a total, never a value."""
    values = [
        cli.run("token", "-p", "api", "--scope", s).out.strip() for s in ("api:read", "email")
    ]
    hashes = {token_hash(v) for v in values}

    table = cli.run("list", "-p", "api")
    assert table.status == 0, table
    lines = table.out.splitlines()
    assert lines[0].split() == ["ISSUER", "SUBJECT", "KIND", "SCOPES", "EXPIRES", "IN", "HASH"]
    assert {line.split()[-1] for line in lines[1:3]} == {h[:12] for h in hashes}
    assert all("(client)" in line and "access" in line for line in lines[1:3])
    assert lines[-1] == "2 tokens"

    as_json = cli.run("list", "-p", "api", "--json")
    data = json.loads(as_json.out)
    assert data["total"] == 2
    assert {t["hash"] for t in data["tokens"]} == hashes
    assert all(t["kind"] == "access" and t["subject"] is None for t in data["tokens"])
    for output in (table.out, table.err, as_json.out, as_json.err):
        assert not any(v in output for v in values)

    page = cli.run("list", "-p", "api", "--limit", "1", "--offset", "1")
    assert page.out.splitlines()[-1] == "2-2 of 2 tokens"
    assert listed(cli, "--kind", "refresh", "--client-credentials")["total"] == 0
    assert listed(cli, "--subject", "alice")["total"] == 0
    assert cli.run("list", "-p", "api", "--kind", "refresh").out == "0 tokens\n"


def test_list_needs_no_client_secret(cli: Cli) -> None:
    """`list` reads the local store only: a missing secret variable does not matter."""
    cli.monkeypatch.delenv(SECRET_ENV)
    result = cli.run("list", "-p", "api")
    assert result == Result(0, "0 tokens\n", "")


# --------------------------------------------------------------------------------------------
# register, refresh, introspect
# --------------------------------------------------------------------------------------------


def test_register_refresh_token_then_token_for_subject_refreshes(cli: Cli) -> None:
    """A refresh token registered from stdin is used by `token --subject alice` (one refresh)."""
    tokens = obtain_refresh_token(cli.server, "basic-client")
    registered = cli.run("register", "-p", "api", "-", stdin=tokens["refresh_token"] + "\n")
    assert registered.status == 0, registered
    rt_hash = token_hash(tokens["refresh_token"])
    assert registered.out.startswith(f"registered refresh token {rt_hash[:12]} for subject 'alice'")
    assert tokens["refresh_token"] not in registered.out

    before = cli.server.token_counts()
    first = cli.run("token", "-p", "api", "--subject", "alice", "--scope", "api:read")
    second = cli.run("token", "-p", "api", "--subject", "alice", "--scope", "api:read")
    after = cli.server.token_counts()
    assert first.status == 0, first
    assert first.out == second.out
    assert after["refresh_token"] - before["refresh_token"] == 1
    assert after["total"] - before["total"] == 1
    info = server_introspect(cli.server, "basic-client", first.out.strip())
    assert info["sub"] == "alice" and info["active"] is True

    kinds = {(t["kind"], t["subject"]) for t in listed(cli, "--subject", "alice")["tokens"]}
    assert kinds == {("access", "alice"), ("refresh", "alice")}


def test_register_access_token_without_introspection(cli: Cli) -> None:
    """`register --kind access --no-introspect` stores what the caller says, no request."""
    value = client_credentials_token(cli.server, "basic-client", "api:read")["access_token"]
    result = cli.run(
        "register",
        "-p",
        "api",
        "--kind",
        "access",
        "--scope",
        "api:read",
        "--expires-in",
        "600",
        "--no-introspect",
        "-",
        stdin=value,
    )
    assert result.status == 0, result
    assert "the client (client credentials)" in result.out and "scopes api:read" in result.out
    before = cli.server.token_counts()
    assert cli.run("token", "-p", "api", "--scope", "api:read").out == value + "\n"
    assert cli.server.token_counts()["total"] == before["total"]


def test_introspect_reads_token_from_stdin(cli: Cli) -> None:
    """`introspect -` reads the token from stdin; human line and --json agree with the server."""
    value = cli.run("token", "-p", "api", "--scope", "api:read").out.strip()
    human = cli.run("introspect", "-p", "api", "-", stdin=value + "\n")
    assert human.status == 0, human
    assert human.out.startswith(f"access token {token_hash(value)[:12]}: active")
    assert "client basic-client" in human.out and "scopes api:read" in human.out
    assert human.out.count("\n") == 1 and value not in human.out

    as_json = cli.run("introspect", "-p", "api", "--json", "--hash", token_hash(value)[:12])
    data = json.loads(as_json.out)
    assert data["active"] is True and data["client_id"] == "basic-client"
    assert value not in as_json.out


def test_token_argument_rules(cli: Cli) -> None:
    """TOKEN and --hash exclude each other, one is needed, and empty stdin is refused (exit 2)."""
    assert "one of TOKEN" in assert_one_line_error(cli.run("revoke", "-p", "api"), 2)
    both = cli.run("revoke", "-p", "api", "-", "--hash", "a" * 64)
    assert "one of TOKEN" in assert_one_line_error(both, 2)
    empty = cli.run("introspect", "-p", "api", "-", stdin="  \n")
    assert "no token on standard input" in assert_one_line_error(empty, 2)
    bad = cli.run("revoke", "-p", "api", "--hash", "xyz")
    assert "hex digits" in assert_one_line_error(bad, 2)


# --------------------------------------------------------------------------------------------
# revoke, delete, delete-all, expunge, metadata
# --------------------------------------------------------------------------------------------


def test_revoke_by_hash_revokes_at_server_and_token_gets_a_new_one(cli: Cli) -> None:
    """`revoke --hash` revokes at the server; the next `token` obtains a different token."""
    value = cli.run("token", "-p", "api", "--scope", "api:read").out.strip()
    result = cli.run("revoke", "-p", "api", "--hash", token_hash(value))
    assert result == Result(0, f"revoked access token {token_hash(value)[:12]}\n", "")
    assert server_introspect(cli.server, "basic-client", value)["active"] is False
    fresh = cli.run("token", "-p", "api", "--scope", "api:read").out.strip()
    assert fresh and fresh != value


def test_delete_revokes_and_removes_and_no_revoke_only_removes(cli: Cli) -> None:
    """`delete` revokes and removes the token; `--no-revoke` removes it and leaves it active."""
    gone = cli.run("token", "-p", "api", "--scope", "api:read").out.strip()
    kept = cli.run("token", "-p", "api", "--scope", "email").out.strip()

    result = cli.run("delete", "-p", "api", "-", stdin=gone)
    assert (
        result.out == f"deleted access token {token_hash(gone)[:12]} and revoked it at the server\n"
    )
    assert server_introspect(cli.server, "basic-client", gone)["active"] is False

    result = cli.run("delete", "-p", "api", "--no-revoke", "--hash", token_hash(kept)[:12])
    assert result.out == f"deleted access token {token_hash(kept)[:12]}\n"
    assert server_introspect(cli.server, "basic-client", kept)["active"] is True
    assert listed(cli)["total"] == 0

    missing = cli.run("delete", "-p", "api", "--hash", token_hash(kept))
    assert "no stored access token" in assert_one_line_error(missing, 1)


def test_delete_all_removes_the_clients_tokens(cli: Cli) -> None:
    """`delete-all` revokes and removes every client-credentials token, leaving alice's."""
    values = [
        cli.run("token", "-p", "api", "--scope", s).out.strip() for s in ("api:read", "email")
    ]
    tokens = obtain_refresh_token(cli.server, "basic-client")
    assert cli.run("register", "-p", "api", "-", stdin=tokens["refresh_token"]).status == 0

    result = cli.run("delete-all", "-p", "api", "--kind", "access")
    assert result.status == 0, result
    assert result.out == (
        "deleted 2 access tokens of the client (client credentials) (revoked at the server)\n"
    )
    assert all(server_introspect(cli.server, "basic-client", v)["active"] is False for v in values)
    assert [t["subject"] for t in listed(cli)["tokens"]] == ["alice"]

    result = cli.run("delete-all", "-p", "api", "--subject", "alice")
    assert result.out.startswith("deleted 0 access and 1 refresh tokens of subject 'alice'")
    assert listed(cli)["total"] == 0


def test_expunge_removes_expired_tokens(cli: Cli) -> None:
    """`expunge` removes a stored token past its expiry and reports the count."""
    with DiskStore(cli.store, retain_expired=3600) as store:  # keeps the expired token around
        store.put(
            AccessToken(
                value="expired-token-value",
                issuer=cli.server.issuer,
                client_id="basic-client",
                expires_at=time.time() - 60,
            )
        )
    assert listed(cli, "--status", "all")["total"] == 0  # the CLI's store hides expired ones
    result = cli.run("expunge", "-p", "api")
    assert result.status == 0, result
    assert result.out.startswith("removed 1 expired token from DiskStore(")
    assert cli.run("expunge", "-p", "api").out.startswith("removed 0 expired tokens")
    with DiskStore(cli.store, retain_expired=3600) as store:
        assert store.get(token_hash("expired-token-value")) is None


def test_expunge_keeps_other_clients_tokens_and_all_sweeps_the_store(cli: Cli) -> None:
    """`expunge` removes the profile's expired tokens only; `expunge --all` the whole store's."""
    with DiskStore(cli.store, retain_expired=3600) as store:  # keeps the expired tokens around
        for client_id in ("basic-client", "post-client"):
            store.put(
                AccessToken(
                    value=f"expired-{client_id}-value",
                    issuer=cli.server.issuer,
                    client_id=client_id,
                    expires_at=time.time() - 60,
                )
            )
    assert cli.run("expunge", "-p", "api").out.startswith("removed 1 expired token from")
    with DiskStore(cli.store, retain_expired=3600) as store:
        assert store.get(token_hash("expired-basic-client-value")) is None
        assert store.get(token_hash("expired-post-client-value")) is not None
    assert cli.run("expunge", "-p", "api", "--all").out.startswith("removed 1 expired token")
    with DiskStore(cli.store, retain_expired=3600) as store:
        assert store.get(token_hash("expired-post-client-value")) is None


def test_hash_of_a_refresh_token_is_acted_on_as_one(cli: Cli) -> None:
    """`revoke --hash` of a stored refresh token (default --kind access) revokes it as a
    refresh token, and says so."""
    tokens = obtain_refresh_token(cli.server, "basic-client")
    assert cli.run("register", "-p", "api", "-", stdin=tokens["refresh_token"]).status == 0
    digest = token_hash(tokens["refresh_token"])
    result = cli.run("revoke", "-p", "api", "--hash", digest[:10])
    assert result == Result(0, f"revoked refresh token {digest[:12]}\n", "")
    assert server_introspect(cli.server, "basic-client", tokens["refresh_token"])["active"] is False


def test_metadata_prints_discovered_document(cli: Cli) -> None:
    """`metadata` prints the discovered server metadata as JSON (no secret needed)."""
    cli.monkeypatch.delenv(SECRET_ENV)
    result = cli.run("metadata", "-p", "api")
    assert result.status == 0, result
    document = json.loads(result.out)
    assert document["issuer"] == cli.server.issuer
    assert document["token_endpoint"] == cli.server.token_endpoint
    assert isinstance(document["scopes_supported"], list)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_unknown_profile_exits_2_with_one_line(cli: Cli) -> None:
    """An unknown profile is a usage error: exit 2, one line naming the known profiles."""
    line = assert_one_line_error(cli.run("token", "-p", "nope"), 2)
    assert "unknown profile 'nope'" in line and "profiles: api" in line


def test_missing_secret_env_var_exits_2(cli: Cli) -> None:
    """A client_secret_env naming an unset variable is a configuration error (exit 2)."""
    cli.monkeypatch.delenv(SECRET_ENV)
    line = assert_one_line_error(cli.run("token", "-p", "api"), 2)
    assert SECRET_ENV in line and "not set" in line


def test_unreachable_server_exits_1(cli: Cli) -> None:
    """An issuer on a closed port fails at run time: exit 1, one line, no traceback."""
    line = assert_one_line_error(
        cli.run("token", "-p", "api", "--issuer", "http://127.0.0.1:9", "--scope", "api:read"), 1
    )
    assert "http://127.0.0.1:9" in line


def test_wrong_secret_is_invalid_client_without_the_secret(cli: Cli) -> None:
    """A wrong secret gives invalid_client (exit 1) and neither secret appears in the output."""
    wrong = "wrong-secret-value:+&"
    cli.monkeypatch.setenv(SECRET_ENV, wrong)
    result = cli.run("token", "-p", "api", "--scope", "api:read")
    line = assert_one_line_error(result, 1)
    assert "invalid_client" in line and "HTTP 401" in line
    assert wrong not in result.err
    assert cli.server.client_secret("basic-client") not in result.err


def test_group_readable_secret_file_is_refused(cli: Cli, tmp_path: Path) -> None:
    """A client_secret_file with mode 0644 is refused (exit 2) without reading it out."""
    secret_file = tmp_path / "secret"
    secret_file.write_text("file-secret-value\n", encoding="utf-8")
    secret_file.chmod(0o644)
    result = cli.run("token", "-p", "api", "--client-secret-file", str(secret_file))
    line = assert_one_line_error(result, 2)
    assert "mode 0644" in line and "chmod 600" in line
    assert "file-secret-value" not in result.err


def test_configuration_errors_exit_2(cli: Cli, tmp_path: Path) -> None:
    """Bad TOML, a secret in the file, unknown fields and missing issuer are usage errors."""
    cli.write_config("[profiles.api\n")
    assert "not valid TOML" in assert_one_line_error(cli.run("list", "-p", "api"), 2)

    cli.write_config(profile("api", cli.server, cli.store, client_secret="in-the-file"))
    result = cli.run("token", "-p", "api")
    assert "client_secret is not read" in assert_one_line_error(result, 2)
    assert "in-the-file" not in result.err

    cli.write_config(profile("api", cli.server, cli.store, scope="typo"))
    assert "unknown field 'scope'" in assert_one_line_error(cli.run("list", "-p", "api"), 2)

    cli.write_config("[api]\nissuer = 'x'\n")
    assert "[profiles.NAME]" in assert_one_line_error(cli.run("list", "-p", "api"), 2)

    cli.monkeypatch.setenv("OAUTH2_TOKEN_MANAGER_CONFIG", str(tmp_path / "absent.toml"))
    assert "does not exist" in assert_one_line_error(cli.run("list"), 2)

    cli.monkeypatch.delenv("OAUTH2_TOKEN_MANAGER_CONFIG")  # the XDG default, absent: no profile
    assert "no issuer configured" in assert_one_line_error(cli.run("list"), 2)

    cli.monkeypatch.setenv("OAUTH2_TOKEN_MANAGER_LEEWAY", "soon")
    assert "OAUTH2_TOKEN_MANAGER_LEEWAY" in assert_one_line_error(cli.run("list"), 2)


def test_insecure_issuer_without_loopback_permission_exits_2(cli: Cli) -> None:
    """An http:// issuer without allow_insecure_loopback is a configuration error (exit 2)."""
    result = cli.run("token", "-p", "api", "--no-allow-insecure-loopback")
    assert_one_line_error(result, 2)


def test_xdg_default_config_and_default_profile(cli: Cli, tmp_path: Path) -> None:
    """Without --config the XDG file is read, and its default_profile selects the profile."""
    cli.monkeypatch.delenv("OAUTH2_TOKEN_MANAGER_CONFIG")
    xdg = tmp_path / "xdg-config" / "oauth2_token_manager"
    xdg.mkdir(parents=True)
    text = 'default_profile = "main"\n' + profile("main", cli.server, cli.store)
    (xdg / "config.toml").write_text(text, encoding="utf-8")
    assert cli.run("list").out == "0 tokens\n"


def test_usage_errors_and_help_exit_codes(cli: Cli) -> None:
    """argparse usage errors exit 2, --help and --version exit 0 (main returns, never raises)."""
    assert cli.run().status == 2
    assert cli.run("list", "--kind", "bogus").status == 2
    assert cli.run("list", "--subject", "a", "--client-credentials").status == 2
    helped = cli.run("--help")
    assert helped.status == 0 and "token" in helped.out and "delete-all" in helped.out
    assert cli.run("--version").status == 0


def test_verbose_logs_to_stderr_without_token_values(cli: Cli) -> None:
    """`-vv` logs the library's steps to stderr; stdout still holds only the token."""
    result = cli.run("token", "-p", "api", "-vv", "--scope", "api:read")
    assert result.status == 0, result
    value = result.out.strip()
    assert f"{PROG}: DEBUG: oauth2_token_manager" in result.err
    assert value not in result.err


def test_environment_alone_configures_everything(cli: Cli, tmp_path: Path) -> None:
    """With no configuration file, OAUTH2_TOKEN_MANAGER_<FIELD> variables are enough."""
    cli.monkeypatch.delenv("OAUTH2_TOKEN_MANAGER_CONFIG")
    variables = {
        "ISSUER": cli.server.issuer,
        "CLIENT_ID": "post-client",
        "AUTH_METHOD": "client_secret_post",
        "CLIENT_SECRET_ENV": "CLI_TEST_POST_SECRET",
        "ALLOW_INSECURE_LOOPBACK": "yes",
        "STORE": str(tmp_path / "env-store"),
        "SCOPES": "api:read api:write",
        "LEEWAY": "30",
        "DISCOVERY": "0",
        "METADATA": json.dumps({"token_endpoint": cli.server.token_endpoint}),
    }
    for name, value in variables.items():
        cli.monkeypatch.setenv(f"OAUTH2_TOKEN_MANAGER_{name}", value)
    cli.monkeypatch.setenv("CLI_TEST_POST_SECRET", cli.server.client_secret("post-client"))
    result = cli.run("token")
    assert result.status == 0, result
    info = server_introspect(cli.server, "basic-client", result.out.strip())
    assert info["client_id"] == "post-client"
    assert set(info["scope"].split()) == {"api:read", "api:write"}
    assert (tmp_path / "env-store" / "cache.db").exists()
    metadata = json.loads(cli.run("metadata").out)  # discovery off: issuer plus the overrides
    assert metadata == {"issuer": cli.server.issuer, "token_endpoint": cli.server.token_endpoint}


def test_endpoint_flags_override_metadata(cli: Cli) -> None:
    """`--no-discovery --endpoint FIELD=URL` builds the metadata from the flags alone."""
    result = cli.run(
        "metadata",
        "-p",
        "api",
        "--no-discovery",
        "--endpoint",
        f"token_endpoint={cli.server.token_endpoint}",
        "--endpoint",
        f"revocation_endpoint={cli.server.revocation_endpoint}",
    )
    assert json.loads(result.out) == {
        "issuer": cli.server.issuer,
        "token_endpoint": cli.server.token_endpoint,
        "revocation_endpoint": cli.server.revocation_endpoint,
    }
    assert cli.run("metadata", "-p", "api", "--endpoint", "token_endpoint").status == 2


def test_hash_of_another_profiles_token_is_refused(cli: Cli) -> None:
    """A stored token of another client (shared store) is never revoked with this profile."""
    cli.monkeypatch.setenv("CLI_TEST_POST_SECRET", cli.server.client_secret("post-client"))
    cli.write_config(
        profile("api", cli.server, cli.store)
        + profile(
            "post",
            cli.server,
            cli.store,
            client_id="post-client",
            auth_method="client_secret_post",
            client_secret_env="CLI_TEST_POST_SECRET",
        )
    )
    value = cli.run("token", "-p", "post", "--scope", "api:read").out.strip()
    result = cli.run("revoke", "-p", "api", "--hash", token_hash(value))
    assert "client 'post-client', not to this manager's" in assert_one_line_error(result, 1)
    unknown = cli.run("revoke", "-p", "api", "--hash", token_hash(value)[:12])
    assert "no stored access token" in assert_one_line_error(unknown, 1)
    assert server_introspect(cli.server, "basic-client", value)["active"] is True


def test_introspect_inactive_and_delete_of_unstored_token(cli: Cli) -> None:
    """A revoked token introspects as inactive; deleting an unstored token still revokes it."""
    value = client_credentials_token(cli.server, "basic-client", "api:read")["access_token"]
    result = cli.run("delete", "-p", "api", "-", stdin=value)
    assert (
        result.out
        == f"access token {token_hash(value)[:12]} was not stored; revoked it at the server\n"
    )
    result = cli.run("introspect", "-p", "api", "-", stdin=value)
    assert result.status == 0 and result.err == ""
    assert result.out == f"access token {token_hash(value)[:12]}: inactive " + (
        "(expired, revoked or unknown to the server)\n"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"leeway": "soon"}, "leeway must be a number of seconds"),
        ({"allow_insecure_loopback": "yes"}, "allow_insecure_loopback must be true or false"),
        ({"scopes": [1]}, "scopes must be a list of strings"),
        ({"metadata": {"token_endpoint": 1}}, "metadata must be a table"),
        ({"client_id": ""}, "client_id must be a non-empty string"),
        ({"auth_method": "password"}, "unknown auth_method 'password'"),
        ({"leeway": -1}, "leeway must be >= 0"),
        ({"client_secret_env": None}, "needs a client secret"),
        ({"auth_method": "private_key_jwt"}, "needs private_key_file"),
    ],
)
def test_invalid_profile_fields_exit_2(cli: Cli, fields: dict[str, object], message: str) -> None:
    """Each ill-typed or incomplete profile field is a one-line usage error (exit 2)."""
    text = profile(
        "api", cli.server, cli.store, **{k: v for k, v in fields.items() if v is not None}
    )
    if fields.get("client_secret_env", "") is None:
        text = text.replace(f'client_secret_env = "{SECRET_ENV}"\n', "")
    cli.write_config(text)
    assert message in assert_one_line_error(cli.run("token", "-p", "api"), 2)


def test_ambiguous_hash_prefix_and_paging_past_the_end(cli: Cli) -> None:
    """Paging past the last token says so; --hash needs at least 8 hex digits."""
    cli.run("token", "-p", "api", "--scope", "api:read")
    assert cli.run("list", "-p", "api", "--offset", "5").out == "none of 1 token at offset 5\n"
    short = cli.run("introspect", "-p", "api", "--hash", "abc")
    assert "8 to 64 hex digits" in assert_one_line_error(short, 2)
    resource = cli.run("register", "-p", "api", "--resource", "https://r", "-", stdin="x")
    assert "--resource applies to access tokens" in assert_one_line_error(resource, 2)


def encrypted_profile(auth_server: AuthServer, tmp_path: Path) -> Path:
    """A config file with profile ``enc``: keys from $STORE_KEYS, secret from $CLI_SECRET."""
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[profiles.enc]
issuer = "{auth_server.issuer}"
client_id = "basic-client"
client_secret_env = "CLI_SECRET"
store = "{tmp_path / "store"}"
encryption_keys_env = "STORE_KEYS"
allow_insecure_loopback = true
"""
    )
    return config


def test_encrypted_store_needs_its_keys(
    auth_server: AuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """encryption_keys_env encrypts the store; without the keys the next run fails in one
    line (exit 1), never with an empty store."""
    from oauth2_token_manager import generate_encryption_key

    monkeypatch.setenv("STORE_KEYS", generate_encryption_key())
    monkeypatch.setenv("CLI_SECRET", auth_server.client_secret("basic-client") or "")
    config = encrypted_profile(auth_server, tmp_path)
    assert main(["--config", str(config), "token", "-p", "enc", "--scope", "api:read"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.encode() not in (tmp_path / "store" / "cache.db").read_bytes()
    monkeypatch.setenv("STORE_KEYS", generate_encryption_key())
    assert main(["--config", str(config), "token", "-p", "enc", "--scope", "api:read"]) == 1
    err = capsys.readouterr().err
    assert "decrypt" in err and err.count("\n") == 1


# --------------------------------------------------------------------------------------------
# Bad input: one line, no traceback, nothing written
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ("token", "-p", "api", "--scope", "café"),
        ("token", "-p", "api", "--scope", ""),
        ("token", "-p", "api", "--subject", ""),
        ("list", "-p", "api", "--subject", ""),
        ("delete-all", "-p", "api", "--subject", ""),
        ("register", "-p", "api", "--subject", "", "--no-introspect", "-"),
        ("register", "-p", "api", "--scope", "café", "--no-introspect", "-"),
        ("register", "-p", "api", "--kind", "access", "--expires-in", "inf", "-"),
        ("register", "-p", "api", "--kind", "access", "--expires-in", "nan", "-"),
        ("register", "-p", "api", "--kind", "access", "--expires-in", "-5", "-"),
        ("register", "-p", "api", "--kind", "access", "--expires-in", "1e400", "-"),
    ],
    ids=lambda argv: " ".join(argv),
)
def test_bad_input_is_one_line_and_writes_nothing(cli: Cli, argv: tuple[str, ...]) -> None:
    """Bad scopes, an empty subject or a non-finite/negative --expires-in: one error line,
    exit 2 (a usage error), no traceback, no token request, the store unchanged (listable)."""
    before = cli.server.token_counts()["total"]
    result = cli.run(*argv, stdin="a-registered-token-value\n")
    assert_one_line_error(result, 2)
    assert cli.server.token_counts()["total"] == before
    assert listed(cli)["total"] == 0


def test_bad_encryption_key_is_one_line(
    auth_server: AuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """A value of encryption_keys_env that is not a Fernet key: one error line, exit 2."""
    monkeypatch.setenv("STORE_KEYS", "not-a-fernet-key")
    monkeypatch.setenv("CLI_SECRET", auth_server.client_secret("basic-client") or "")
    config = encrypted_profile(auth_server, tmp_path)
    status = main(["--config", str(config), "token", "-p", "enc", "--scope", "api:read"])
    captured = capsys.readouterr()
    assert status == 2, captured
    assert captured.out == ""
    assert captured.err.startswith(f"{PROG}: error: ")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert "not-a-fernet-key" not in captured.err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_secret_file_that_is_a_fifo_is_refused_without_blocking(cli: Cli, tmp_path: Path) -> None:
    """A client_secret_file that is a FIFO (or any non-regular file) is refused at once: one
    error line, exit 2 (opening a FIFO for reading would block forever)."""
    fifo = tmp_path / "secret"
    os.mkfifo(fifo, 0o600)
    cli.monkeypatch.delenv(SECRET_ENV)
    cli.write_config(
        profile("api", cli.server, cli.store, client_secret_file="secret").replace(
            f'client_secret_env = "{SECRET_ENV}"\n', ""
        )
    )
    outcome: list[Result] = []
    runner = threading.Thread(target=lambda: outcome.append(cli.run("token", "-p", "api")))
    runner.daemon = True
    runner.start()
    runner.join(timeout=60)
    if not outcome:  # blocked in open(): unblock it by opening the other end, then fail
        with open(fifo, "w", encoding="utf-8") as writer:
            writer.write("x")
        runner.join(timeout=60)
        pytest.fail("reading a FIFO secret file blocked")
    assert "not a regular file" in assert_one_line_error(outcome[0], 2)
