"""``oauth2-token-manager``: the token manager for shell scripts and people.

::

    curl -H "Authorization: Bearer $(oauth2-token-manager token -p api)" https://api.example.com/
    oauth2-token-manager list -p api
    oauth2-token-manager register -p api - < refresh-token.txt
    oauth2-token-manager token -p api --subject alice --scope invoices:read

Configuration: a TOML file of named profiles, ``$XDG_CONFIG_HOME/oauth2_token_manager/config.toml``
(``~/.config/...`` when unset), or ``--config PATH`` / ``$OAUTH2_TOKEN_MANAGER_CONFIG``::

    default_profile = "api"

    [profiles.api]
    issuer = "https://login.example.com"
    client_id = "billing-svc"
    client_secret_env = "BILLING_SVC_SECRET"   # or client_secret_file = "~/.billing.secret"
    auth_method = "client_secret_basic"        # the default
    scopes = ["invoices:read"]                 # default scopes of `token`
    store = "~/.cache/oauth2_token_manager"    # a DiskStore directory (this is the default)

    [profiles.api.metadata]                    # endpoint overrides (optional)
    token_endpoint = "https://login.example.com/oauth/token"

Profile fields: ``issuer``, ``client_id``, ``client_secret_env`` (the name of an environment
variable holding the secret), ``client_secret_file`` (mode 0600 or stricter; a trailing newline
is stripped), ``auth_method``, ``private_key_file`` (PEM or JSON JWK) and ``signing_alg`` for
``private_key_jwt``, ``store``, ``encryption_keys_env`` (the name of an environment variable
holding the store's Fernet keys, comma-separated, the first one encrypting), ``scopes``,
``allow_insecure_loopback``, ``leeway``, ``metadata`` and ``discovery``. Relative paths in the
file are relative to the file.

The profile is chosen by ``-p/--profile``, else ``$OAUTH2_TOKEN_MANAGER_PROFILE``, else the
file's ``default_profile``, else a profile named ``default`` if there is one. Every field can be
overridden by ``$OAUTH2_TOKEN_MANAGER_<FIELD>`` (``OAUTH2_TOKEN_MANAGER_ISSUER``, ...; scopes
space-separated, booleans ``1/0/true/false/yes/no``, metadata a JSON object) and by a flag
(``--issuer``, ...): flags win over the environment, which wins over the file. A client secret
is never taken from the command line (``ps`` would show it) nor from the configuration file.

Only ``token`` prints a token value; everything else names tokens by their SHA-256 hash. Errors
are one line on stderr; the exit status is 2 for usage and configuration errors, 1 for failures
at run time (server unreachable, ``invalid_client``, no stored token, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, get_args

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

from . import (
    ANY,
    AccessTokenManager,
    AuthMethod,
    ClientConfig,
    ConfigurationError,
    DiskStore,
    Issuer,
    OAuth2TokenManagerError,
    RefreshTokenManager,
    Token,
    TokenNotFoundError,
    __version__,
    short_hash,
)
from ._stores._disk import default_directory

__all__ = ["main"]

PROG = "oauth2-token-manager"
ENV_PREFIX = "OAUTH2_TOKEN_MANAGER_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
PROFILE_ENV = ENV_PREFIX + "PROFILE"

_AUTH_METHODS: tuple[str, ...] = get_args(AuthMethod)
_NEEDS_SECRET = frozenset({"client_secret_basic", "client_secret_post", "client_secret_jwt"})
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
_FIELDS = (*_STRING_FIELDS, *_PATH_FIELDS, *_BOOL_FIELDS, "scopes", "leeway", "metadata")
_SECRET_SOURCES = ("client_secret_env", "client_secret_file")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_HEX = re.compile(r"[0-9a-f]{8,64}")
_KINDS = ("access", "refresh")

# Commands that send client-authenticated requests; the others never need the secret.
_AUTHENTICATED = frozenset({"token", "introspect", "revoke", "delete", "delete-all", "register"})

Manager = AccessTokenManager | RefreshTokenManager


class UsageError(Exception):
    """A usage or configuration error: exit status 2."""


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class Settings:
    """The merged configuration of one run (file < environment < flags)."""

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


def _encryption_keys(settings: Settings, environ: Mapping[str, str]) -> list[str] | None:
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


def _config_path(args: argparse.Namespace) -> tuple[Path, bool]:
    """The configuration file and whether it was named explicitly (then it must exist)."""
    named = getattr(args, "config", None) or os.environ.get(CONFIG_ENV)
    if named:
        return Path(named).expanduser(), True
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "oauth2_token_manager" / "config.toml", False


def _read_config(path: Path, explicit: bool) -> dict[str, Any] | None:
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


def _field_error(source: str, name: str, expected: str) -> UsageError:
    return UsageError(f"{source}: {name} must be {expected}")


def _check_string(source: str, name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _field_error(source, name, "a non-empty string")
    if name == "auth_method" and value not in _AUTH_METHODS:
        raise UsageError(
            f"{source}: unknown auth_method {value!r} (one of {', '.join(_AUTH_METHODS)})"
        )
    return value


def _check_scopes(source: str, value: object) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return _split_scopes(value)
    raise _field_error(source, "scopes", "a list of strings")


def _check_metadata(source: str, value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _field_error(source, "metadata", "a table of field = URL strings")
    return dict(value)


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
            raise UsageError(f"{source}: unknown field {key!r} (known: {', '.join(_FIELDS)})")
    return layer


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """The fields set by ``OAUTH2_TOKEN_MANAGER_<FIELD>`` (an empty variable counts as unset)."""
    layer: dict[str, Any] = {}
    for key in _FIELDS:
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
                value = json.loads(raw)
            except ValueError:
                raise UsageError(f"{name} must be a JSON object of field: URL") from None
            layer[key] = _check_metadata(name, value)
    return layer


def _flag_layer(args: argparse.Namespace) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for key in _FIELDS:
        if key == "metadata":
            pairs = getattr(args, "endpoint", None)
            if pairs:
                layer[key] = dict(pairs)
        elif key != "scopes" and hasattr(args, key):
            value = getattr(args, key)
            layer[key] = Path(value).expanduser() if key in _PATH_FIELDS else value
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


def load_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Read the configuration file, select the profile and apply the overrides."""
    path, explicit = _config_path(args)
    document = _read_config(path, explicit)
    name: str | None = (
        getattr(args, "profile", None)
        or environ.get(PROFILE_ENV)
        or (document or {}).get("default_profile")
    )
    if name is None and "default" in (document or {}).get("profiles", {}):
        name = "default"
    merged = _merge([_file_layer(document, name, path), _env_layer(environ), _flag_layer(args)])
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


def _read_private_file(path: Path, what: str) -> str:
    """The text of a file only its owner can access (checked on the open file)."""
    try:
        with path.open(encoding="utf-8") as file:
            mode = os.fstat(file.fileno()).st_mode
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
        return _read_private_file(settings.client_secret_file, "client secret file")
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
    text = _read_private_file(settings.private_key_file, "private key file")
    if text.lstrip().startswith("{"):
        try:
            jwk = json.loads(text)
        except ValueError:
            jwk = None
        if not isinstance(jwk, dict):
            raise UsageError(f"private key file {settings.private_key_file} is not a JSON JWK")
        return jwk
    return text


def build_client(
    settings: Settings, environ: Mapping[str, str], secrets: list[str], *, authenticate: bool
) -> ClientConfig:
    """The client configuration; without ``authenticate`` no credential is read at all."""
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


# --------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"


def _expires_in(expires_at: float | None, now: float) -> str:
    if expires_at is None:
        return "unknown"
    left = expires_at - now
    return _duration(left) if left > 0 else f"expired {_duration(left)} ago"


def _scope_text(scopes: Iterable[str] | None) -> str:
    if scopes is None:
        return "(unknown)"
    return " ".join(sorted(scopes)) or "(none)"


def _token_row(token: Token, now: float) -> dict[str, Any]:
    """What ``list --json`` shows of a token: never its value nor its response's extras."""
    return {
        "hash": token.token_hash,
        "kind": token.kind,
        "issuer": token.issuer,
        "client_id": token.client_id,
        "subject": token.subject,
        "scopes": sorted(token.scopes) if token.scopes is not None else None,
        "resource": token.resource,
        "token_type": token.token_type,
        "expires_at": token.expires_at,
        "expires_in": (int(token.expires_at - now) if token.expires_at is not None else None),
        "issued_at": token.issued_at,
        "active": token.active,
    }


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _json_default(value: object) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, frozenset | set):
        return sorted(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _dump(data: object, out: TextIO) -> None:
    json.dump(data, out, indent=2, default=_json_default)
    out.write("\n")


def _subject_text(subject: str | None) -> str:
    return f"subject {subject!r}" if subject else "the client (client credentials)"


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


@dataclass
class Context:
    """What a command works with."""

    settings: Settings
    issuer: Issuer
    access: AccessTokenManager
    refresh: RefreshTokenManager
    out: TextIO
    stdin: TextIO

    def manager(self, kind: str) -> Manager:
        return self.access if kind == "access" else self.refresh


def _split_scopes(values: Iterable[str]) -> list[str]:
    return [scope for value in values for scope in value.split()]


def _token_value(ctx: Context, args: argparse.Namespace, manager: Manager) -> str:
    """The token named by TOKEN, ``-`` (standard input) or ``--hash``."""
    if (args.token is None) == (args.hash is None):
        raise UsageError("give one of TOKEN, - (read the token from standard input) or --hash H")
    if args.hash is not None:
        return _stored_by_hash(ctx, manager, args.hash).value
    if args.token == "-":
        value = ctx.stdin.read().strip()
        if not value:
            raise UsageError("no token on standard input")
        return str(value)
    return str(args.token)


def _stored_by_hash(ctx: Context, manager: Manager, given: str) -> Token:
    """The stored token of this issuer and client with this SHA-256 hash (or hash prefix)."""
    digest = given.lower()
    if not _HEX.fullmatch(digest):
        raise UsageError("--hash takes 8 to 64 hex digits of a token's SHA-256 hash")
    if len(digest) == 64:
        token = manager.find_by_hash(digest)
    else:
        found = [t for t in manager.list().items if t.token_hash.startswith(digest)]
        if len(found) > 1:
            raise UsageError(f"hash prefix {digest} matches {len(found)} tokens: give more digits")
        token = found[0] if found else None
    if token is None:
        raise TokenNotFoundError(f"no stored {manager.kind} token with hash {digest}")
    if token.issuer != ctx.issuer.url or token.client_id != ctx.settings.client_id:
        raise TokenNotFoundError(
            f"stored {manager.kind} token {token.short_hash} belongs to issuer {token.issuer} "
            f"and client {token.client_id!r}, not to this profile"
        )
    return token


def cmd_token(ctx: Context, args: argparse.Namespace) -> int:
    scopes = _split_scopes(args.scope) if args.scope else ctx.settings.scopes
    token = ctx.access.get(args.subject, scopes, resource=args.resource)
    ctx.out.write(token.value + "\n")
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    subject: Any = ANY
    if args.client_credentials:
        subject = None
    elif args.subject is not None:
        subject = args.subject
    kinds = [args.kind] if args.kind else list(_KINDS)
    items: list[Token] = []
    for kind in kinds:
        items.extend(ctx.manager(kind).list(subject=subject, status=args.status).items)
    items.sort(key=lambda t: (t.updated_at, t.issued_at, t.token_hash), reverse=True)
    total = len(items)
    stop = None if args.limit is None else args.offset + args.limit
    page = items[args.offset : stop]
    now = time.time()
    if args.json:
        _dump(
            {
                "total": total,
                "offset": args.offset,
                "limit": args.limit,
                "tokens": [_token_row(t, now) for t in page],
            },
            ctx.out,
        )
        return 0
    if page:
        rows = [("ISSUER", "SUBJECT", "KIND", "SCOPES", "EXPIRES IN", "HASH")]
        rows += [
            (
                t.issuer,
                t.subject or "(client)",
                t.kind,
                _scope_text(t.scopes),
                _expires_in(t.expires_at, now),
                t.short_hash,
            )
            for t in page
        ]
        ctx.out.write(_table(rows) + "\n")
    noun = "token" if total == 1 else "tokens"
    if len(page) == total:
        ctx.out.write(f"{total} {noun}\n")
    elif page:
        first = args.offset + 1
        ctx.out.write(f"{first}-{first + len(page) - 1} of {total} {noun}\n")
    else:
        ctx.out.write(f"none of {total} {noun} at offset {args.offset}\n")
    return 0


def cmd_introspect(ctx: Context, args: argparse.Namespace) -> int:
    manager = ctx.manager(args.kind)
    value = _token_value(ctx, args, manager)
    result = manager.introspect(value)
    if args.json:
        _dump(dict(result.raw), ctx.out)
        return 0
    name = f"{manager.kind} token {short_hash(value)}"
    if not result.active:
        ctx.out.write(f"{name}: inactive (expired, revoked or unknown to the server)\n")
        return 0
    parts = [f"{name}: active"]
    if result.sub:
        parts.append(f"subject {result.sub}")
    if result.client_id:
        parts.append(f"client {result.client_id}")
    parts.append(f"scopes {_scope_text(result.scopes)}")
    parts.append(f"expires in {_expires_in(result.exp, time.time())}")
    ctx.out.write(", ".join(parts) + "\n")
    return 0


def cmd_revoke(ctx: Context, args: argparse.Namespace) -> int:
    manager = ctx.manager(args.kind)
    value = _token_value(ctx, args, manager)
    manager.revoke(value)
    ctx.out.write(f"revoked {manager.kind} token {short_hash(value)}\n")
    return 0


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    manager = ctx.manager(args.kind)
    value = _token_value(ctx, args, manager)
    removed = manager.delete(value)
    what = f"{manager.kind} token {short_hash(value)}"
    revoked = "" if args.no_revoke else " and revoked it at the server"
    if removed:
        ctx.out.write(f"deleted {what}{revoked}\n")
    else:
        ctx.out.write(f"{what} was not stored{'; revoked it at the server' if revoked else ''}\n")
    return 0


def cmd_delete_all(ctx: Context, args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(_KINDS)
    counts = [f"{ctx.manager(kind).delete_all(args.subject)} {kind}" for kind in kinds]
    revoked = "" if args.no_revoke else " (revoked at the server)"
    ctx.out.write(f"deleted {' and '.join(counts)} tokens of {_subject_text(args.subject)}")
    ctx.out.write(f"{revoked}\n")
    return 0


def cmd_expunge(ctx: Context, args: argparse.Namespace) -> int:
    removed = ctx.access.expunge_expired()
    noun = "token" if removed == 1 else "tokens"
    ctx.out.write(f"removed {removed} expired {noun} from {ctx.issuer.store!r}\n")
    return 0


def cmd_metadata(ctx: Context, args: argparse.Namespace) -> int:
    _dump(dict(ctx.issuer.metadata()), ctx.out)
    return 0


def cmd_register(ctx: Context, args: argparse.Namespace) -> int:
    if args.resource is not None and args.kind == "refresh":
        raise UsageError("--resource applies to access tokens (a refresh token serves any)")
    manager = ctx.manager(args.kind)
    value = _token_value(ctx, args, manager)
    token = manager.register(
        value,
        subject=args.subject,
        scopes=_split_scopes(args.scope) if args.scope else None,
        expires_in=args.expires_in,
        resource=args.resource,
        auto_introspect=False if args.no_introspect else None,
    )
    ctx.out.write(
        f"registered {token.kind} token {token.short_hash} for {_subject_text(token.subject)} "
        f"(scopes {_scope_text(token.scopes)}; "
        f"expires in {_expires_in(token.expires_at, time.time())})\n"
    )
    return 0


# --------------------------------------------------------------------------------------------
# Argument parsing
# --------------------------------------------------------------------------------------------


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _parse_seconds(source: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{source} must be a number of seconds, not {text!r}") from None


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None


def _endpoint(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not name or not url:
        raise argparse.ArgumentTypeError(f"expected FIELD=URL, got {text!r}")
    return name, url


def _common_options() -> argparse.ArgumentParser:
    """Options accepted before and after the command (defaults suppressed: none override)."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = common.add_argument_group("configuration (flags > environment > file)")
    group.add_argument("-p", "--profile", metavar="NAME", help="profile of the configuration file")
    group.add_argument(
        "--config", metavar="PATH", help=f"configuration file (${CONFIG_ENV}, or the XDG one)"
    )
    group.add_argument("--issuer", metavar="URL", help="authorization server (issuer) URL")
    group.add_argument("--client-id", metavar="ID")
    group.add_argument(
        "--client-secret-env", metavar="VAR", help="environment variable holding the secret"
    )
    group.add_argument(
        "--client-secret-file", metavar="PATH", help="file holding the secret (mode 0600)"
    )
    group.add_argument(
        "--auth-method",
        choices=_AUTH_METHODS,
        metavar="METHOD",
        help=f"client authentication: {', '.join(_AUTH_METHODS)} (default: client_secret_basic)",
    )
    group.add_argument("--private-key-file", metavar="PATH", help="PEM or JWK (private_key_jwt)")
    group.add_argument("--signing-alg", metavar="ALG", help="e.g. ES256 (JWT client auth)")
    group.add_argument("--store", metavar="DIR", help="token store directory (DiskStore)")
    group.add_argument(
        "--allow-insecure-loopback",
        action=argparse.BooleanOptionalAction,
        help="accept http:// for 127.0.0.1/localhost (tests, demos)",
    )
    group.add_argument(
        "--leeway", type=_seconds, metavar="SECONDS", help="refuse tokens this close to expiry"
    )
    group.add_argument(
        "--discovery", action=argparse.BooleanOptionalAction, help="fetch server metadata"
    )
    group.add_argument(
        "--endpoint",
        type=_endpoint,
        action="append",
        metavar="FIELD=URL",
        help="override a metadata field, e.g. token_endpoint=https://... (repeatable)",
    )
    group.add_argument(
        "-v", "--verbose", action="count", help="log to stderr (-v: INFO, -vv: DEBUG)"
    )
    return common


def _add_token_source(parser: argparse.ArgumentParser, *, hash_option: bool = True) -> None:
    parser.add_argument(
        "token",
        nargs="?",
        metavar="TOKEN|-",
        help="the token, or - to read it from standard input (recommended: ps shows arguments)",
    )
    if hash_option:
        parser.add_argument(
            "--hash", metavar="H", help="a stored token's SHA-256 hash (hex, or a prefix of it)"
        )
    else:
        parser.set_defaults(hash=None)


def _add_kind(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument(
        "--kind",
        choices=_KINDS,
        default=default,
        help=f"token kind (default: {default or 'both'})",
    )


_EPILOG = f"""\
configuration file: $XDG_CONFIG_HOME/oauth2_token_manager/config.toml (or ~/.config/...),
or --config PATH, or ${CONFIG_ENV}

  default_profile = "api"

  [profiles.api]
  issuer = "https://login.example.com"
  client_id = "billing-svc"
  client_secret_env = "BILLING_SVC_SECRET"   # or client_secret_file = "billing.secret" (0600)
  scopes = ["invoices:read"]

Every profile field can be set by ${ENV_PREFIX}<FIELD> (e.g. ${ENV_PREFIX}ISSUER)
and by a flag; flags win over the environment, which wins over the file. The profile is
-p NAME, else ${PROFILE_ENV}, else default_profile. More: pydoc oauth2_token_manager.cli

exit status: 0 success, 1 failure at run time, 2 usage or configuration error
"""


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Get, store, introspect, revoke and delete OAuth 2.0 tokens.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[Context, argparse.Namespace], int], help_: str) -> Any:
        sub = commands.add_parser(name, parents=[common], help=help_, description=help_)
        sub.set_defaults(run=run)
        return sub

    sub = command("token", cmd_token, "print an access token (from the store when possible)")
    sub.add_argument(
        "--scope", action="append", metavar="S", help="scope (repeatable; default: the profile's)"
    )
    sub.add_argument("--subject", metavar="SUB", help="a user's token (needs a refresh token)")
    sub.add_argument("--resource", metavar="R", help="resource indicator (RFC 8707)")

    sub = command("list", cmd_list, "list stored tokens (hashes, never values)")
    who = sub.add_mutually_exclusive_group()
    who.add_argument("--subject", metavar="SUB", help="only this subject's tokens")
    who.add_argument(
        "--client-credentials", action="store_true", help="only the client's own tokens"
    )
    _add_kind(sub, None)
    sub.add_argument("--status", choices=("valid", "expired", "all"), default="all")
    sub.add_argument("--offset", type=_non_negative_int, default=0, metavar="N")
    sub.add_argument("--limit", type=_non_negative_int, default=None, metavar="N")
    sub.add_argument("--json", action="store_true", help="JSON instead of a table")

    sub = command("introspect", cmd_introspect, "ask the server about a token (RFC 7662)")
    _add_token_source(sub)
    _add_kind(sub, "access")
    sub.add_argument("--json", action="store_true", help="the server's answer as JSON")

    sub = command("revoke", cmd_revoke, "revoke a token at the server (RFC 7009)")
    _add_token_source(sub)
    _add_kind(sub, "access")

    sub = command("delete", cmd_delete, "revoke a token and remove it from the store")
    _add_token_source(sub)
    _add_kind(sub, "access")
    sub.add_argument("--no-revoke", action="store_true", help="only remove it from the store")

    sub = command(
        "delete-all",
        cmd_delete_all,
        "revoke and remove the tokens of a subject (default: the client's own tokens)",
    )
    sub.add_argument("--subject", metavar="SUB", help="the user whose tokens go")
    _add_kind(sub, None)
    sub.add_argument("--no-revoke", action="store_true", help="only remove them from the store")

    command("expunge", cmd_expunge, "remove expired tokens from the store (all profiles)")
    command("metadata", cmd_metadata, "print the authorization server's metadata as JSON")

    sub = command("register", cmd_register, "store a token obtained elsewhere")
    _add_token_source(sub, hash_option=False)
    _add_kind(sub, "refresh")
    sub.add_argument("--subject", metavar="SUB", help="whose token (default: from introspection)")
    sub.add_argument("--scope", action="append", metavar="S", help="its scopes (repeatable)")
    sub.add_argument("--expires-in", type=_seconds, metavar="N", help="lifetime in seconds")
    sub.add_argument("--resource", metavar="R", help="resource indicator (access tokens)")
    sub.add_argument(
        "--no-introspect", action="store_true", help="do not ask the server for missing metadata"
    )
    return parser


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _setup_logging(verbosity: int) -> Callable[[], None]:
    """Log to stderr (-v: the library at INFO; -vv: DEBUG and httpx); return the undo."""
    if not verbosity:
        return lambda: None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(name)s: %(message)s"))
    loggers = [(logging.getLogger("oauth2_token_manager"), logging.INFO)]
    if verbosity > 1:
        loggers = [(loggers[0][0], logging.DEBUG), (logging.getLogger("httpx"), logging.INFO)]
    saved = [(logger, logger.level) for logger, _ in loggers]
    for logger, level in loggers:
        logger.setLevel(level)
        logger.addHandler(handler)

    def undo() -> None:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)

    return undo


def _fail(message: str, status: int, secrets: Sequence[str]) -> int:
    for secret in secrets:
        message = message.replace(secret, "***")
    line = " ".join(message.split())
    sys.stderr.write(f"{PROG}: error: {line}\n")
    return status


def _run(args: argparse.Namespace, secrets: list[str]) -> int:
    environ = os.environ
    settings = load_settings(args, environ)
    client = build_client(settings, environ, secrets, authenticate=args.command in _AUTHENTICATED)
    options: dict[str, Any] = {
        "allow_insecure_loopback": settings.allow_insecure_loopback,
        "discovery": settings.discovery,
        "metadata": settings.metadata,
        "revoke_on_delete": not getattr(args, "no_revoke", False),
    }
    if settings.leeway is not None:
        options["leeway"] = settings.leeway
    with contextlib.ExitStack() as stack:
        keys = _encryption_keys(settings, environ)
        directory = settings.store or default_directory()
        store = DiskStore(directory, encryption_keys=keys)
        stack.callback(store.close)
        issuer = Issuer(settings.issuer, client, store=store, **options)
        stack.callback(issuer.close)
        ctx = Context(
            settings=settings,
            issuer=issuer,
            access=AccessTokenManager(issuer),
            refresh=RefreshTokenManager(issuer),
            out=sys.stdout,
            stdin=sys.stdin,
        )
        status: int = args.run(ctx, args)
        ctx.out.flush()
        return status


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (argparse printed them)
        return exc.code if isinstance(exc.code, int) else 2
    undo_logging = _setup_logging(getattr(args, "verbose", 0))
    secrets: list[str] = []
    try:
        return _run(args, secrets)
    except UsageError as exc:
        return _fail(str(exc), 2, secrets)
    except ConfigurationError as exc:
        return _fail(str(exc), 2, secrets)
    except OAuth2TokenManagerError as exc:
        return _fail(str(exc), 1, secrets)
    except BrokenPipeError:  # `... | head`: the reader is gone, so is the output
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{where}", 1, secrets)
    except KeyboardInterrupt:
        return 130
    finally:
        undo_logging()


if __name__ == "__main__":
    sys.exit(main())
