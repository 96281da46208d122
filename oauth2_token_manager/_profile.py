"""Profiles of the command line: where its configuration comes from and how it is checked.

Pure: no argument parsing, no network, no store. ``load_settings(flags, environ, config)``
takes the flag values as a mapping, the environment as a mapping and the ``--config`` value,
and gives the merged ``Settings`` of one run or raises ``UsageError`` (exit status 2) with a
one-line message naming where the bad value came from. ``build_client`` and
``encryption_keys`` then read the credentials the settings point to.

The rules:

* **The file.** A TOML file of ``[profiles.NAME]`` tables and an optional ``default_profile``:
  ``--config PATH``, else ``$OAUTH2_TOKEN_MANAGER_CONFIG``, else
  ``$XDG_CONFIG_HOME/oauth2_token_manager/config.toml`` (``~/.config/...`` when that variable
  is unset or not absolute). A file named by the flag or the variable must exist; the default
  one may be absent (then only the environment and the flags configure). Any other top-level
  key, an unknown profile field or an ill-typed value is an error, never ignored. Relative
  paths in a profile are relative to the file.
* **The profile.** ``-p/--profile``, else ``$OAUTH2_TOKEN_MANAGER_PROFILE``, else the file's
  ``default_profile``, else a profile named ``default`` if the file has one, else none.
* **Precedence.** Flags win over the environment (``$OAUTH2_TOKEN_MANAGER_<FIELD>``, an empty
  variable counting as unset), which wins over the file, field by field. ``metadata`` merges
  key by key. The secret's source is one field: a layer that names ``client_secret_env`` or
  ``client_secret_file`` replaces both, so a file's ``client_secret_file`` never shadows an
  environment's ``client_secret_env``. ``issuer`` and ``client_id`` must come from somewhere.
* **Secrets.** A client secret is never taken from the command line (``ps`` shows arguments to
  every user) nor from the configuration file (shared, copied, checked in): only from the
  environment variable ``client_secret_env`` names, or from ``client_secret_file``. That file,
  like ``private_key_file``, must be accessible by its owner alone (mode 0600 or stricter,
  checked on the opened file, so no swap between check and read); a trailing newline is
  stripped. The store's Fernet keys come from the variable ``encryption_keys_env`` names,
  comma-separated, the first one encrypting. Credentials are read only when a command
  authenticates to the server (``build_client(..., authenticate=True)``), and every secret read
  is appended to the caller's list so that error messages can be scrubbed of it.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

from ._client_auth import AuthMethod, ClientConfig
from ._json import JSONDocumentError, loads, loads_object

__all__ = [
    "AUTH_METHODS",
    "CONFIG_ENV",
    "ENV_PREFIX",
    "FIELDS",
    "PROFILE_ENV",
    "Settings",
    "UsageError",
    "build_client",
    "config_path",
    "encryption_keys",
    "load_settings",
    "read_config",
    "read_private_file",
    "split_scopes",
]

ENV_PREFIX = "OAUTH2_TOKEN_MANAGER_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
PROFILE_ENV = ENV_PREFIX + "PROFILE"

AUTH_METHODS: tuple[str, ...] = get_args(AuthMethod)
_STRING_FIELDS = (
    "issuer",
    "client_id",
    "client_secret_env",
    "auth_method",
    "signing_alg",
    "encryption_keys_env",
)
_PATH_FIELDS = ("client_secret_file", "private_key_file", "store")
_BOOL_FIELDS = ("allow_insecure_loopback", "discovery")
FIELDS = (*_STRING_FIELDS, *_PATH_FIELDS, *_BOOL_FIELDS, "scopes", "leeway", "metadata")
"""The profile fields, in the order error messages list them."""
_SECRET_SOURCES = ("client_secret_env", "client_secret_file")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class UsageError(Exception):
    """A usage or configuration error: exit status 2."""


@dataclass
class Settings:
    """The merged configuration of one run (file < environment < flags). It names where
    credentials are (variables, files), never holds them."""

    profile: str | None
    issuer: str
    client_id: str
    auth_method: str = "client_secret_basic"
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    private_key_file: Path | None = None
    signing_alg: str | None = None
    store: Path | None = None
    encryption_keys_env: str | None = None
    scopes: list[str] | None = None
    allow_insecure_loopback: bool = False
    leeway: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    discovery: bool = True


def split_scopes(values: Iterable[str]) -> list[str]:
    """The scopes of several space-separated scope strings, in order; a blank one is a
    ``UsageError`` (``--scope ''`` names no scope token, RFC 6749 §3.3)."""
    scopes = []
    for value in values:
        tokens = value.split()
        if not tokens:
            raise UsageError("a scope must not be empty")
        scopes += tokens
    return scopes


# --------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------


def config_path(
    config: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> tuple[Path, bool]:
    """The configuration file and whether it was named explicitly (then it must exist)."""
    named = config or environ.get(CONFIG_ENV)
    if named:
        return Path(named).expanduser(), True
    xdg = environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "oauth2_token_manager" / "config.toml", False


def read_config(path: Path, explicit: bool) -> dict[str, Any] | None:
    """The parsed file; ``None`` when the default file does not exist."""
    try:
        with path.open("rb") as file:
            document: dict[str, Any] = tomllib.load(file)
    except FileNotFoundError:
        if explicit:
            raise UsageError(f"configuration file {path} does not exist") from None
        return None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read configuration file {path}: {exc.strerror}") from None
    for key, value in document.items():
        if key == "default_profile":
            if not isinstance(value, str) or not value:
                raise UsageError(f"{path}: default_profile must be a profile name")
        elif key == "profiles":
            if not isinstance(value, dict) or not all(isinstance(p, dict) for p in value.values()):
                raise UsageError(f"{path}: profiles must be tables ([profiles.NAME])")
        else:
            raise UsageError(
                f"{path}: unknown top-level key {key!r} "
                "(expected default_profile and [profiles.NAME] tables)"
            )
    return document


# --------------------------------------------------------------------------------------------
# Field checks and the three layers
# --------------------------------------------------------------------------------------------


def _field_error(source: str, name: str, expected: str) -> UsageError:
    return UsageError(f"{source}: {name} must be {expected}")


def _check_string(source: str, name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _field_error(source, name, "a non-empty string")
    if name == "auth_method" and value not in AUTH_METHODS:
        raise UsageError(
            f"{source}: unknown auth_method {value!r} (one of {', '.join(AUTH_METHODS)})"
        )
    return value


def _check_scopes(source: str, value: object) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return split_scopes(value)
    raise _field_error(source, "scopes", "a list of strings")


def _check_metadata(source: str, value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _field_error(source, "metadata", "a table of field = URL strings")
    return dict(value)


def _parse_seconds(source: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{source} must be a number of seconds, not {text!r}") from None


def _file_layer(document: Mapping[str, Any] | None, name: str | None, path: Path) -> dict[str, Any]:
    """The typed fields of profile ``name`` (relative paths resolved against the file)."""
    if name is None:
        return {}
    if document is None:
        raise UsageError(f"unknown profile {name!r}: there is no configuration file {path}")
    profiles: Mapping[str, Any] = document.get("profiles", {})
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise UsageError(f"unknown profile {name!r} in {path} (profiles: {known})")
    source = f"{path} [profiles.{name}]"
    layer: dict[str, Any] = {}
    for key, value in profiles[name].items():
        if key == "client_secret":
            raise UsageError(
                f"{source}: client_secret is not read from the configuration file; "
                "use client_secret_env or client_secret_file"
            )
        if key in _STRING_FIELDS:
            layer[key] = _check_string(source, key, value)
        elif key in _PATH_FIELDS:
            file_path = Path(_check_string(source, key, value)).expanduser()
            layer[key] = file_path if file_path.is_absolute() else path.parent / file_path
        elif key in _BOOL_FIELDS:
            if not isinstance(value, bool):
                raise _field_error(source, key, "true or false")
            layer[key] = value
        elif key == "scopes":
            layer[key] = _check_scopes(source, value)
        elif key == "leeway":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _field_error(source, key, "a number of seconds")
            layer[key] = float(value)
        elif key == "metadata":
            layer[key] = _check_metadata(source, value)
        else:
            raise UsageError(f"{source}: unknown field {key!r} (known: {', '.join(FIELDS)})")
    return layer


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """The fields set by ``OAUTH2_TOKEN_MANAGER_<FIELD>`` (an empty variable counts as unset)."""
    layer: dict[str, Any] = {}
    for key in FIELDS:
        name = ENV_PREFIX + key.upper()
        raw = environ.get(name, "")
        if not raw:
            continue
        if key in _STRING_FIELDS:
            layer[key] = _check_string(name, key, raw)
        elif key in _PATH_FIELDS:
            layer[key] = Path(raw).expanduser()
        elif key in _BOOL_FIELDS:
            if raw.lower() not in _TRUE | _FALSE:
                raise UsageError(f"{name} must be 1/0, true/false or yes/no")
            layer[key] = raw.lower() in _TRUE
        elif key == "scopes":
            layer[key] = raw.split()
        elif key == "leeway":
            layer[key] = _parse_seconds(name, raw)
        else:  # metadata
            try:
                value = loads(raw)
            except ValueError:
                raise UsageError(f"{name} must be a JSON object of field: URL") from None
            layer[key] = _check_metadata(name, value)
    return layer


def _flag_layer(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The fields given as flags, as the parser typed them (``None``: not given); paths are
    expanded, ``metadata`` is a mapping of field to URL."""
    unknown = sorted(set(flags) - {"profile", *FIELDS})
    if unknown:
        raise ValueError(f"not profile flags: {', '.join(unknown)}")
    layer: dict[str, Any] = {}
    for key in FIELDS:
        value = flags.get(key)
        if value is None:
            continue
        if key in _PATH_FIELDS:
            layer[key] = Path(value).expanduser()
        elif key == "metadata":
            layer[key] = dict(value)
        else:
            layer[key] = value
    return layer


def _merge(layers: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Later layers win, field by field; the secret's source (env or file) is one field."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if any(key in layer for key in _SECRET_SOURCES):
            for key in _SECRET_SOURCES:
                merged.pop(key, None)
        for key, value in layer.items():
            if key == "metadata":
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    return merged


def load_settings(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    config: str | os.PathLike[str] | None = None,
) -> Settings:
    """Read the configuration file, select the profile and apply the overrides.

    ``flags`` maps ``profile`` and profile fields to the values given on the command line
    (absent or ``None``: not given); ``config`` is the ``--config`` value, if any."""
    path, explicit = config_path(config, environ)
    document = read_config(path, explicit)
    name: str | None = (
        flags.get("profile") or environ.get(PROFILE_ENV) or (document or {}).get("default_profile")
    )
    if name is None and "default" in (document or {}).get("profiles", {}):
        name = "default"
    merged = _merge([_file_layer(document, name, path), _env_layer(environ), _flag_layer(flags)])
    for required, flag in (("issuer", "--issuer"), ("client_id", "--client-id")):
        if required not in merged:
            where = f"profile {name!r}" if name else "no profile selected"
            raise UsageError(
                f"no {required} configured ({where}): set {required} in the profile, "
                f"{ENV_PREFIX}{required.upper()} or {flag}"
            )
    return Settings(profile=name, **merged)


# --------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------


def read_private_file(path: Path, what: str) -> str:
    """The text of a regular file only its owner can access (checked on the open file).

    A FIFO, device or directory is refused before it is opened, and the file is opened
    non-blocking, so that one swapped in meanwhile cannot block either (then refused too)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise UsageError(f"{what} {path} is not a regular file")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, encoding="utf-8") as file:  # an fd, not a path
            mode = os.fstat(file.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise UsageError(f"{what} {path} is not a regular file")
            if os.name == "posix" and mode & 0o077:
                raise UsageError(
                    f"{what} {path} is accessible by group or others "
                    f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
                )
            text = file.read()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not UTF-8 text") from None
    text = text.rstrip("\r\n")
    if not text:
        raise UsageError(f"{what} {path} is empty")
    return text


def _client_secret(settings: Settings, environ: Mapping[str, str]) -> str:
    if settings.client_secret_file is not None:
        return read_private_file(settings.client_secret_file, "client secret file")
    if settings.client_secret_env is not None:
        secret = environ.get(settings.client_secret_env, "")
        if not secret:
            raise UsageError(
                f"the environment variable {settings.client_secret_env} (client_secret_env) "
                "is not set or empty"
            )
        return secret
    raise UsageError(
        f"{settings.auth_method} needs a client secret: set client_secret_env or "
        "client_secret_file in the profile (or --client-secret-env/--client-secret-file)"
    )


def _private_key(settings: Settings) -> Mapping[str, Any] | str:
    if settings.private_key_file is None:
        raise UsageError("private_key_jwt needs private_key_file (a PEM file or a JSON JWK)")
    text = read_private_file(settings.private_key_file, "private key file")
    if text.lstrip().startswith("{"):
        try:
            return loads_object(text)
        except JSONDocumentError:
            raise UsageError(
                f"private key file {settings.private_key_file} is not a JSON JWK"
            ) from None
    return text


def build_client(
    settings: Settings, environ: Mapping[str, str], secrets: list[str], *, authenticate: bool
) -> ClientConfig:
    """The client configuration; without ``authenticate`` no credential is read at all. The
    client secret read is appended to ``secrets`` (for scrubbing messages)."""
    method = settings.auth_method
    if not authenticate or method == "none":
        return ClientConfig(settings.client_id, auth_method="none")
    if method == "private_key_jwt":
        key = _private_key(settings)
        return ClientConfig(
            settings.client_id,
            auth_method="private_key_jwt",
            private_key=key,
            signing_alg=settings.signing_alg,
        )
    secret = _client_secret(settings, environ)
    secrets.append(secret)
    return ClientConfig(
        settings.client_id,
        secret,
        auth_method=method,  # type: ignore[arg-type]  # checked against AuthMethod
        signing_alg=settings.signing_alg,
    )


def encryption_keys(settings: Settings, environ: Mapping[str, str]) -> list[str] | None:
    """The store's Fernet keys from the variable named by ``encryption_keys_env``
    (comma-separated, the first one encrypts)."""
    if settings.encryption_keys_env is None:
        return None
    raw = environ.get(settings.encryption_keys_env, "")
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        raise UsageError(
            f"the environment variable {settings.encryption_keys_env} (encryption_keys_env) "
            "is empty or not set"
        )
    return keys
