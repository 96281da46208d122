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
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from . import (
    ANY,
    AccessTokenManager,
    ConfigurationError,
    DiskStore,
    InvalidArgumentError,
    Issuer,
    OAuth2TokenManagerError,
    RefreshTokenManager,
    Token,
    TokenNotFoundError,
    __version__,
)
from ._models import short_hash
from ._profile import (
    AUTH_METHODS,
    CONFIG_ENV,
    ENV_PREFIX,
    FIELDS,
    PROFILE_ENV,
    Settings,
    UsageError,
    build_client,
    encryption_keys,
    load_settings,
    split_scopes,
)
from ._stores._disk import default_directory

__all__ = ["main"]

PROG = "oauth2-token-manager"
_KINDS = ("access", "refresh")

# Commands that send client-authenticated requests; the others never need the secret.
_AUTHENTICATED = frozenset({"token", "introspect", "revoke", "delete", "delete-all", "register"})

Manager = AccessTokenManager | RefreshTokenManager


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


_ONE_SOURCE = "give one of TOKEN, - (read the token from standard input) or --hash H"


def _token_value(ctx: Context, args: argparse.Namespace) -> str:
    """The token named by TOKEN or ``-`` (standard input)."""
    if args.token is None:
        raise UsageError(_ONE_SOURCE)
    if args.token == "-":
        value = ctx.stdin.read().strip()
        if not value:
            raise UsageError("no token on standard input")
        return str(value)
    return str(args.token)


def _named_token(ctx: Context, args: argparse.Namespace) -> tuple[Manager, Token | str, str]:
    """The manager of ``--kind``, the token named by TOKEN, ``-`` or ``--hash`` (the stored
    ``Token``, whose kind the managers act as), and how messages name it: its kind and the
    prefix of its hash, never its value."""
    manager = ctx.manager(args.kind)
    if args.hash is None:
        value = _token_value(ctx, args)
        return manager, value, f"{manager.kind} token {short_hash(value)}"
    if args.token is not None:
        raise UsageError(_ONE_SOURCE)
    token = _stored_by_hash(manager, args.hash)
    return manager, token, f"{token.kind} token {token.short_hash}"


def _stored_by_hash(manager: Manager, given: str) -> Token:
    """The stored token of this issuer and client with this SHA-256 hash (or a unique prefix
    of 8+ hex digits): the managers' rule (``find_by_hash``), its argument errors exit 2."""
    try:
        token = manager.find_by_hash(given)
    except InvalidArgumentError as exc:
        raise UsageError(f"--hash: {exc}") from None
    if token is None:
        raise TokenNotFoundError(f"no stored {manager.kind} token with hash {given[:12].lower()}")
    return token


def cmd_token(ctx: Context, args: argparse.Namespace) -> int:
    scopes = split_scopes(args.scope) if args.scope else ctx.settings.scopes
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
    manager, value, name = _named_token(ctx, args)
    result = manager.introspect(value)
    if args.json:
        _dump(dict(result.raw), ctx.out)
        return 0
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
    manager, value, name = _named_token(ctx, args)
    manager.revoke(value)
    ctx.out.write(f"revoked {name}\n")
    return 0


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    manager, value, name = _named_token(ctx, args)
    removed = manager.delete(value)
    revoked = "" if args.no_revoke else " and revoked it at the server"
    if removed:
        ctx.out.write(f"deleted {name}{revoked}\n")
    else:
        ctx.out.write(f"{name} was not stored{'; revoked it at the server' if revoked else ''}\n")
    return 0


def cmd_delete_all(ctx: Context, args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(_KINDS)
    counts = [f"{ctx.manager(kind).delete_all(args.subject)} {kind}" for kind in kinds]
    revoked = "" if args.no_revoke else " (revoked at the server)"
    ctx.out.write(f"deleted {' and '.join(counts)} tokens of {_subject_text(args.subject)}")
    ctx.out.write(f"{revoked}\n")
    return 0


def cmd_expunge(ctx: Context, args: argparse.Namespace) -> int:
    if args.all:
        removed = ctx.issuer.store.expunge_expired(ctx.issuer.options.clock())
    else:
        removed = ctx.access.expunge_expired() + ctx.refresh.expunge_expired()
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
    token = manager.register(
        _token_value(ctx, args),
        subject=args.subject,
        scopes=split_scopes(args.scope) if args.scope else None,
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
        choices=AUTH_METHODS,
        metavar="METHOD",
        help=f"client authentication: {', '.join(AUTH_METHODS)} (default: client_secret_basic)",
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

    sub = command(
        "expunge", cmd_expunge, "remove the profile's expired tokens (its issuer and client)"
    )
    sub.add_argument(
        "--all", action="store_true", help="remove every expired token of the store (all profiles)"
    )
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


def _profile_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The profile and profile fields given as flags (``--endpoint`` pairs as ``metadata``)."""
    given = vars(args)
    flags = {key: value for key, value in given.items() if key == "profile" or key in FIELDS}
    if given.get("endpoint"):
        flags["metadata"] = dict(given["endpoint"])
    return flags


def _run(args: argparse.Namespace, secrets: list[str]) -> int:
    environ = os.environ
    settings = load_settings(_profile_flags(args), environ, getattr(args, "config", None))
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
        keys = encryption_keys(settings, environ)
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
    except (ConfigurationError, InvalidArgumentError) as exc:  # bad input: a usage error
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
