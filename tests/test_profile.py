"""Profile loading and validation of the command line (``oauth2_token_manager._profile``).

Pure: plain mappings for the flags and the environment, files under ``tmp_path``; no process,
no server, no ``os.environ``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from oauth2_token_manager import ClientConfig
from oauth2_token_manager._profile import (
    CONFIG_ENV,
    PROFILE_ENV,
    Settings,
    UsageError,
    build_client,
    config_path,
    encryption_keys,
    load_settings,
    read_config,
    read_private_file,
)

ISSUER = "https://login.example.com"
SECRET = "s3cret-value-never-printed"
posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    """Write ``text`` to ``path`` with ``mode``; return the path."""
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A configuration file with profiles ``api`` (the default) and ``other``."""
    return write(
        tmp_path / "config.toml",
        f"""
default_profile = "api"

[profiles.api]
issuer = "{ISSUER}"
client_id = "from-file"
client_secret_file = "secret.txt"
scopes = ["a", "b c"]
leeway = 5
allow_insecure_loopback = true
metadata = {{ token_endpoint = "https://file/token", revocation_endpoint = "https://file/rev" }}

[profiles.other]
issuer = "https://other.example.com"
client_id = "other"
""",
    )


def load(config: Path | None, flags: dict[str, Any] | None = None, **environ: str) -> Settings:
    """``load_settings`` with these flags and exactly this environment."""
    return load_settings(flags or {}, environ, config)


def load_error(config: Path | None, flags: dict[str, Any] | None = None, **environ: str) -> str:
    """The message of the ``UsageError`` that ``load_settings`` raises."""
    with pytest.raises(UsageError) as caught:
        load(config, flags, **environ)
    message = str(caught.value)
    assert "\n" not in message
    return message


def profile_error(tmp_path: Path, body: str) -> str:
    """The message for a file whose profile ``p`` has this body."""
    path = write(tmp_path / "bad.toml", f'[profiles.p]\nissuer = "{ISSUER}"\n{body}\n')
    return load_error(path, {"profile": "p"})


def settings(**fields: Any) -> Settings:
    """Settings for ``ISSUER`` and client ``c`` with these fields."""
    return Settings(profile=None, issuer=ISSUER, client_id="c", **fields)


# --------------------------------------------------------------------------------------------
# Precedence: flags > environment > file
# --------------------------------------------------------------------------------------------


def test_file_profile_is_read_with_typed_fields(config: Path) -> None:
    """The default profile's fields come out typed: paths resolved, scopes split, bools, floats."""
    loaded = load(config)
    assert loaded.profile == "api"
    assert (loaded.issuer, loaded.client_id) == (ISSUER, "from-file")
    assert loaded.client_secret_file == config.parent / "secret.txt"
    assert loaded.scopes == ["a", "b", "c"]
    assert loaded.leeway == 5.0 and isinstance(loaded.leeway, float)
    assert loaded.allow_insecure_loopback is True and loaded.discovery is True
    assert loaded.auth_method == "client_secret_basic"


def test_environment_beats_file_and_flags_beat_both(config: Path) -> None:
    """Each field is taken from the flags, else the environment, else the file."""
    env = {"OAUTH2_TOKEN_MANAGER_ISSUER": "https://env", "OAUTH2_TOKEN_MANAGER_LEEWAY": "7"}
    assert load(config, **env).issuer == "https://env"
    assert load(config, **env).client_id == "from-file"
    flagged = load(config, {"issuer": "https://flag", "client_id": None}, **env)
    assert (flagged.issuer, flagged.client_id, flagged.leeway) == ("https://flag", "from-file", 7)


def test_empty_environment_variable_counts_as_unset(config: Path) -> None:
    """OAUTH2_TOKEN_MANAGER_ISSUER="" leaves the file's issuer in place."""
    assert load(config, OAUTH2_TOKEN_MANAGER_ISSUER="").issuer == ISSUER


def test_metadata_merges_key_by_key_across_layers(config: Path) -> None:
    """metadata from the file, the environment and the flags combine; the later layer wins."""
    loaded = load(
        config,
        {"metadata": {"token_endpoint": "https://flag/token"}},
        OAUTH2_TOKEN_MANAGER_METADATA='{"revocation_endpoint": "https://env/rev", "x": "y"}',
    )
    assert loaded.metadata == {
        "token_endpoint": "https://flag/token",
        "revocation_endpoint": "https://env/rev",
        "x": "y",
    }


def test_secret_source_is_one_field(config: Path, tmp_path: Path) -> None:
    """A layer naming client_secret_env or client_secret_file replaces both of a lower one."""
    from_env = load(config, OAUTH2_TOKEN_MANAGER_CLIENT_SECRET_ENV="MY_SECRET")
    assert from_env.client_secret_env == "MY_SECRET" and from_env.client_secret_file is None
    flag_file = tmp_path / "flag.secret"
    from_flag = load(
        config,
        {"client_secret_file": str(flag_file)},
        OAUTH2_TOKEN_MANAGER_CLIENT_SECRET_ENV="MY_SECRET",
    )
    assert from_flag.client_secret_file == flag_file and from_flag.client_secret_env is None


def test_flags_are_taken_as_typed_and_paths_expanded(config: Path) -> None:
    """Flag values keep their type (bools, floats); ~ in a path flag is expanded."""
    loaded = load(
        config,
        {"store": "~/tokens", "discovery": False, "allow_insecure_loopback": True, "leeway": 0.0},
    )
    assert loaded.store == Path("~/tokens").expanduser()
    assert (loaded.discovery, loaded.allow_insecure_loopback, loaded.leeway) == (False, True, 0.0)


def test_unknown_flag_is_a_programming_error(config: Path) -> None:
    """A key that is neither profile nor a profile field is refused (ValueError, not ignored)."""
    with pytest.raises(ValueError, match="not profile flags: subject"):
        load(config, {"subject": "alice"})


# --------------------------------------------------------------------------------------------
# Which profile, which file
# --------------------------------------------------------------------------------------------


def test_profile_choice_flag_then_env_then_default_profile(config: Path) -> None:
    """The profile is the flag's, else $OAUTH2_TOKEN_MANAGER_PROFILE's, else default_profile."""
    assert load(config).profile == "api"
    assert load(config, **{PROFILE_ENV: "other"}).client_id == "other"
    assert load(config, {"profile": "api"}, **{PROFILE_ENV: "other"}).client_id == "from-file"


def test_profile_named_default_is_used_without_default_profile(tmp_path: Path) -> None:
    """Without default_profile, a profile named ``default`` is selected."""
    path = write(tmp_path / "c.toml", f'[profiles.default]\nissuer = "{ISSUER}"\nclient_id = "d"\n')
    assert load(path).profile == "default"


def test_unknown_profile_lists_the_known_ones(config: Path, tmp_path: Path) -> None:
    """An unknown profile names the file and its profiles, or says there is no file."""
    assert "unknown profile 'nope'" in load_error(config, {"profile": "nope"})
    assert "(profiles: api, other)" in load_error(config, {"profile": "nope"})
    xdg = {"XDG_CONFIG_HOME": str(tmp_path / "empty")}
    assert "there is no configuration file" in load_error(None, {"profile": "x"}, **xdg)


def test_config_path_argument_then_env_then_xdg(tmp_path: Path) -> None:
    """The file is --config, else $OAUTH2_TOKEN_MANAGER_CONFIG, else the XDG default."""
    xdg = str(tmp_path / "xdg")
    assert config_path("a.toml", {CONFIG_ENV: "b.toml"}) == (Path("a.toml"), True)
    assert config_path(None, {CONFIG_ENV: "b.toml"}) == (Path("b.toml"), True)
    default = Path(xdg) / "oauth2_token_manager" / "config.toml"
    assert config_path(None, {"XDG_CONFIG_HOME": xdg}) == (default, False)


def test_relative_xdg_config_home_is_ignored() -> None:
    """A relative $XDG_CONFIG_HOME is not used (the spec says absolute); ~/.config is."""
    path, explicit = config_path(None, {"XDG_CONFIG_HOME": "relative"})
    assert path == Path.home() / ".config" / "oauth2_token_manager" / "config.toml"
    assert not explicit


def test_missing_default_file_is_fine_and_env_alone_configures(tmp_path: Path) -> None:
    """Without any file, the environment alone gives issuer and client_id."""
    loaded = load(
        None,
        XDG_CONFIG_HOME=str(tmp_path / "none"),
        OAUTH2_TOKEN_MANAGER_ISSUER=ISSUER,
        OAUTH2_TOKEN_MANAGER_CLIENT_ID="env-client",
    )
    assert (loaded.profile, loaded.issuer, loaded.client_id) == (None, ISSUER, "env-client")


def test_missing_named_file_is_an_error(tmp_path: Path) -> None:
    """A file named by --config or the environment must exist."""
    assert "does not exist" in load_error(tmp_path / "absent.toml")
    assert "does not exist" in load_error(None, **{CONFIG_ENV: str(tmp_path / "absent.toml")})


def test_missing_issuer_and_client_id_say_where_to_set_them(tmp_path: Path) -> None:
    """No issuer (or client_id) anywhere: the message names the field, variable and flag."""
    xdg = {"XDG_CONFIG_HOME": str(tmp_path / "none")}
    message = load_error(None, **xdg)
    assert "no issuer configured (no profile selected)" in message
    assert "OAUTH2_TOKEN_MANAGER_ISSUER or --issuer" in message
    message = load_error(None, {"issuer": ISSUER}, **xdg)
    assert "no client_id configured" in message and "--client-id" in message


# --------------------------------------------------------------------------------------------
# Validation of the file and of the environment
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[profiles.api\n", "is not valid TOML"),
        ("[api]\nissuer = 'x'\n", "unknown top-level key 'api'"),
        ("default_profile = 3\n", "default_profile must be a profile name"),
        ("profiles = 3\n", "profiles must be tables ([profiles.NAME])"),
        ("profiles = { a = 1 }\n", "profiles must be tables ([profiles.NAME])"),
    ],
)
def test_malformed_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    """Invalid TOML and unexpected top-level keys or shapes are errors naming the file."""
    path = write(tmp_path / "c.toml", text)
    with pytest.raises(UsageError, match=r"c\.toml") as caught:
        read_config(path, explicit=True)
    assert message in str(caught.value)


@posix_only
def test_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    """A configuration file that cannot be read (here: a directory) is a usage error."""
    with pytest.raises(UsageError, match="cannot read configuration file"):
        read_config(tmp_path, explicit=True)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('client_secret = "x"', "client_secret is not read from the configuration file"),
        ('client_id = ""', "client_id must be a non-empty string"),
        ("client_id = 3", "client_id must be a non-empty string"),
        ('auth_method = "password"', "unknown auth_method 'password' (one of "),
        ("store = 1", "store must be a non-empty string"),
        ('discovery = "yes"', "discovery must be true or false"),
        ('leeway = "soon"', "leeway must be a number of seconds"),
        ("leeway = true", "leeway must be a number of seconds"),
        ("scopes = [1]", "scopes must be a list of strings"),
        ("scopes = 1", "scopes must be a list of strings"),
        ("metadata = { token_endpoint = 1 }", "metadata must be a table of field = URL strings"),
        ('metadata = "x"', "metadata must be a table of field = URL strings"),
        ('scope = "typo"', "unknown field 'scope' (known: issuer, client_id,"),
    ],
)
def test_invalid_profile_field_names_file_profile_and_field(
    tmp_path: Path, body: str, message: str
) -> None:
    """Each ill-typed or unknown field is a UsageError naming the file and [profiles.p]."""
    text = profile_error(tmp_path, body)
    assert message in text
    assert "bad.toml [profiles.p]: " in text


def test_scopes_may_be_one_string_in_the_file(tmp_path: Path) -> None:
    """scopes = "a b" is split like a scope string."""
    path = write(
        tmp_path / "c.toml",
        f'[profiles.p]\nissuer = "{ISSUER}"\nclient_id = "c"\nscopes = "a  b"\n',
    )
    assert load(path, {"profile": "p"}).scopes == ["a", "b"]


def test_relative_and_home_paths_in_the_file(tmp_path: Path) -> None:
    """Relative paths are relative to the file; ~ is the home directory; absolute stay."""
    path = write(
        tmp_path / "c.toml",
        f'[profiles.p]\nissuer = "{ISSUER}"\nclient_id = "c"\nstore = "s"\n'
        f'private_key_file = "~/key.pem"\nclient_secret_file = "{tmp_path / "abs"}"\n',
    )
    loaded = load(path, {"profile": "p"})
    assert loaded.store == tmp_path / "s"
    assert loaded.private_key_file == Path.home() / "key.pem"
    assert loaded.client_secret_file == tmp_path / "abs"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("YES", True), ("on", True), ("true", True), ("0", False), ("No", False)],
)
def test_environment_booleans(config: Path, raw: str, expected: bool) -> None:
    """Booleans in the environment are 1/0, true/false, yes/no or on/off, in any case."""
    loaded = load(config, OAUTH2_TOKEN_MANAGER_ALLOW_INSECURE_LOOPBACK=raw)
    assert loaded.allow_insecure_loopback is expected


def test_environment_typed_fields(config: Path) -> None:
    """Scopes are space-separated, leeway a number, paths expanded, in the environment."""
    loaded = load(
        config,
        OAUTH2_TOKEN_MANAGER_SCOPES="x  y",
        OAUTH2_TOKEN_MANAGER_LEEWAY="2.5",
        OAUTH2_TOKEN_MANAGER_STORE="~/st",
    )
    assert (loaded.scopes, loaded.leeway) == (["x", "y"], 2.5)
    assert loaded.store == Path("~/st").expanduser()


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("DISCOVERY", "maybe", "OAUTH2_TOKEN_MANAGER_DISCOVERY must be 1/0, true/false or yes/no"),
        ("LEEWAY", "soon", "OAUTH2_TOKEN_MANAGER_LEEWAY must be a number of seconds, not 'soon'"),
        ("METADATA", "{nope", "OAUTH2_TOKEN_MANAGER_METADATA must be a JSON object of field: URL"),
        ("METADATA", "[1]", "OAUTH2_TOKEN_MANAGER_METADATA: metadata must be a table"),
        ("AUTH_METHOD", "password", "OAUTH2_TOKEN_MANAGER_AUTH_METHOD: unknown auth_method"),
    ],
)
def test_invalid_environment_values_name_the_variable(
    config: Path, name: str, raw: str, message: str
) -> None:
    """An ill-formed OAUTH2_TOKEN_MANAGER_<FIELD> is a UsageError naming the variable."""
    assert message in load_error(config, **{f"OAUTH2_TOKEN_MANAGER_{name}": raw})


# --------------------------------------------------------------------------------------------
# Secrets, private keys and encryption keys
# --------------------------------------------------------------------------------------------


def test_secret_file_0600_is_read_without_trailing_newline(tmp_path: Path) -> None:
    """An owner-only file gives its text with the trailing newline stripped."""
    path = write(tmp_path / "secret", SECRET + "\r\n")
    assert read_private_file(path, "client secret file") == SECRET


@posix_only
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_secret_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    """A secret file accessible by group or others is refused with the chmod to run."""
    path = write(tmp_path / "secret", SECRET, mode)
    with pytest.raises(UsageError) as caught:
        read_private_file(path, "client secret file")
    message = str(caught.value)
    assert f"is accessible by group or others (mode {mode:04o}); run: chmod 600 {path}" in message
    assert SECRET not in message


def test_secret_file_missing_empty_or_not_text(tmp_path: Path) -> None:
    """A missing, empty (or newline-only) or non-UTF-8 secret file is a UsageError."""
    with pytest.raises(UsageError, match="cannot read client secret file"):
        read_private_file(tmp_path / "absent", "client secret file")
    with pytest.raises(UsageError, match="is empty"):
        read_private_file(write(tmp_path / "empty", "\n"), "client secret file")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    binary.chmod(0o600)
    with pytest.raises(UsageError, match="is not UTF-8 text"):
        read_private_file(binary, "client secret file")


def test_client_secret_from_env_is_recorded_for_scrubbing() -> None:
    """The secret from client_secret_env goes into the client and the caller's secrets list."""
    secrets: list[str] = []
    client = build_client(
        settings(client_secret_env="MY_SECRET"),
        {"MY_SECRET": SECRET},
        secrets,
        authenticate=True,
    )
    assert client.client_secret == SECRET and client.auth_method == "client_secret_basic"
    assert secrets == [SECRET]
    assert SECRET not in repr(client)


def test_client_secret_file_wins_and_is_read(tmp_path: Path) -> None:
    """client_secret_file, when set, is where the secret comes from."""
    path = write(tmp_path / "secret", SECRET + "\n")
    secrets: list[str] = []
    client = build_client(
        settings(client_secret_file=path, auth_method="client_secret_post"),
        {},
        secrets,
        authenticate=True,
    )
    assert (client.client_secret, client.auth_method, secrets) == (
        SECRET,
        "client_secret_post",
        [SECRET],
    )


def test_missing_client_secret_errors() -> None:
    """An unset secret variable, or no secret source at all, is a UsageError saying which."""
    with pytest.raises(UsageError, match=r"MY_SECRET \(client_secret_env\) is not set or empty"):
        build_client(settings(client_secret_env="MY_SECRET"), {}, [], authenticate=True)
    with pytest.raises(UsageError, match="client_secret_jwt needs a client secret"):
        build_client(settings(auth_method="client_secret_jwt"), {}, [], authenticate=True)


def test_no_credential_is_read_without_authenticate(tmp_path: Path) -> None:
    """Commands that do not authenticate get a public client; nothing is read or recorded."""
    secrets: list[str] = []
    unreadable = settings(client_secret_file=tmp_path / "absent", auth_method="private_key_jwt")
    client = build_client(unreadable, {}, secrets, authenticate=False)
    assert (client.client_id, client.auth_method, secrets) == ("c", "none", [])
    public = build_client(settings(auth_method="none"), {}, secrets, authenticate=True)
    assert (public.auth_method, public.client_secret, secrets) == ("none", None, [])


def test_private_key_jwt_reads_a_jwk_or_a_pem(tmp_path: Path) -> None:
    """private_key_file holds a JSON JWK (a mapping) or PEM text; signing_alg is passed on."""
    jwk = write(tmp_path / "key.json", '{"kty": "EC", "d": "x"}\n')
    pem = write(tmp_path / "key.pem", "-----BEGIN PRIVATE KEY-----\nabc\n")
    for path, expected in ((jwk, {"kty": "EC", "d": "x"}), (pem, pem.read_text().rstrip())):
        client = build_client(
            settings(auth_method="private_key_jwt", private_key_file=path, signing_alg="ES256"),
            {},
            [],
            authenticate=True,
        )
        assert isinstance(client, ClientConfig)
        assert (client.private_key, client.alg) == (expected, "ES256")


def test_private_key_errors(tmp_path: Path) -> None:
    """No private_key_file, or a file that starts like JSON but is no strict JSON object (a
    repeated member is ambiguous: which ``d``?), is refused."""
    with pytest.raises(UsageError, match="private_key_jwt needs private_key_file"):
        build_client(settings(auth_method="private_key_jwt"), {}, [], authenticate=True)
    for text in ("{not json", '{"a": 1', '{"kty": "EC", "d": "x", "d": "y"}'):
        path = write(tmp_path / "key.json", text)
        method = settings(auth_method="private_key_jwt", private_key_file=path)
        with pytest.raises(UsageError, match="is not a JSON JWK"):
            build_client(method, {}, [], authenticate=True)


@posix_only
def test_private_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    """The owner-only rule holds for private_key_file as for the secret file."""
    path = write(tmp_path / "key.pem", "-----BEGIN PRIVATE KEY-----\n", 0o644)
    method = settings(auth_method="private_key_jwt", private_key_file=path)
    with pytest.raises(UsageError, match=r"private key file .* is accessible by group or others"):
        build_client(method, {}, [], authenticate=True)


def test_encryption_keys_from_the_named_variable() -> None:
    """Keys are comma-separated and stripped; none configured is None; empty is an error."""
    assert encryption_keys(settings(), {}) is None
    named = settings(encryption_keys_env="KEYS")
    assert encryption_keys(named, {"KEYS": " k1 , k2,, "}) == ["k1", "k2"]
    with pytest.raises(UsageError, match=r"KEYS \(encryption_keys_env\) is empty or not set"):
        encryption_keys(named, {"KEYS": " , "})
