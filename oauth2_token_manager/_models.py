"""Tokens and their metadata: immutable values whose ``repr`` and ``str`` never show the token.

A token is identified everywhere but in ``.value`` by ``token_hash`` (SHA-256 of the value, hex):
stores key by it, logs and errors print its first 12 hex digits (``short_hash`` of a value,
``hash_prefix`` of a hash already computed).

The cache key of a token is its *group* (issuer, client_id, subject or client credentials,
resource) plus its canonical scope string; every store indexes by it, and the single-flight
lock of the managers uses the same key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar, cast

from ._exceptions import CorruptEntryError, InvalidArgumentError
from ._scopes import canonical, scope_set

__all__ = [
    "AccessToken",
    "GroupKey",
    "IDToken",
    "RefreshToken",
    "Token",
    "TokenKind",
    "UserinfoRecord",
    "hash_argument",
    "hash_prefix",
    "is_hash_prefix",
    "is_token_hash",
    "match_hash",
    "short_hash",
    "token_from_dict",
    "token_hash",
]

TokenKind = Literal["access", "refresh", "id", "userinfo"]
_EMPTY: Mapping[str, Any] = types.MappingProxyType({})
_T = TypeVar("_T", bound="Token")


def token_hash(value: str) -> str:
    """SHA-256 of a token value, hex: the only identity stores and logs ever see."""
    return hashlib.sha256(value.encode()).hexdigest()


def short_hash(value: str) -> str:
    """The first 12 hex digits of a token *value*'s hash, for messages and logs.

    Always hashes: a value that happens to look like a hash is hashed too (use ``hash_prefix``
    for a hash you already hold)."""
    return token_hash(value)[:12]


def hash_prefix(digest: str) -> str:
    """The first 12 hex digits of a token *hash* (a ``token_hash`` result), for messages."""
    return digest[:12]


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def is_token_hash(text: object) -> bool:
    """Whether ``text`` is a full token hash (64 lowercase hex digits)."""
    return isinstance(text, str) and _SHA256_HEX.fullmatch(text) is not None


_HASH_PREFIX = re.compile(r"[0-9a-f]{8,64}")


def is_hash_prefix(text: object) -> bool:
    """Whether ``text`` names a token hash or a prefix of one: 8 to 64 lowercase hex digits
    (a full hash is its own prefix). Whether a prefix is unique is the caller's question."""
    return isinstance(text, str) and _HASH_PREFIX.fullmatch(text) is not None


def hash_argument(text: object) -> str:
    """A ``hash=`` argument (or the CLI's ``--hash``) as a lowercase hash or hash prefix;
    ``InvalidArgumentError`` unless it is 8 to 64 hex digits."""
    digest = text.lower() if isinstance(text, str) else text
    if not is_hash_prefix(digest):
        raise InvalidArgumentError("a token hash is 8 to 64 hex digits of its SHA-256 hash")
    return cast(str, digest)


def match_hash(digest: str, hashes: Iterable[str]) -> str | None:
    """The one of ``hashes`` that ``digest`` (a ``hash_argument``: a full hash or a prefix)
    names, or ``None``. ``InvalidArgumentError`` naming how many matched when several do (the
    caller passes the hashes it may act on: its issuer's and client's)."""
    found = {h for h in hashes if h.startswith(digest)}
    if len(found) > 1:
        raise InvalidArgumentError(
            f"hash prefix {hash_prefix(digest)} matches {len(found)} tokens: give more digits"
        )
    return next(iter(found), None)


class GroupKey(NamedTuple):
    """Who a token belongs to: a store never scans outside one group to find a token."""

    kind: str
    issuer: str
    client_id: str
    subject: str  # "" for client credentials
    resource: str  # "" when no resource/audience was requested


def _freeze(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not mapping:
        return _EMPTY
    return types.MappingProxyType(dict(mapping))


@dataclasses.dataclass(frozen=True, slots=True, repr=False, eq=False)
class Token:
    """A token and what is known about it. Compare tokens by ``token_hash``."""

    kind: ClassVar[TokenKind]

    value: str
    issuer: str
    client_id: str
    subject: str | None = None
    scopes: frozenset[str] | None = None
    """The granted scopes; ``None`` when unknown (registered without a scope)."""
    expires_at: float | None = None
    """Expiry in epoch seconds; ``None`` when unknown."""
    issued_at: float = 0.0
    updated_at: float = 0.0
    token_type: str = "Bearer"
    resource: str | None = None
    """The resource indicator or audience it was requested for (part of the cache key)."""
    audience: tuple[str, ...] = ()
    extra: Mapping[str, Any] = dataclasses.field(default_factory=lambda: _EMPTY)
    """Other fields from the token or introspection response (never secrets of the client)."""
    introspected_at: float | None = None
    active: bool = True
    """False once introspection said ``active: false``: never handed out again."""
    introspection: Mapping[str, Any] | None = None
    """The last introspection response (RFC 7662), kept for ``min_introspect_interval``."""
    requested_scopes: frozenset[str] | None = None
    """The scopes asked for, when the server granted others (``scopes``). The token is cached
    under what was asked, so the same request finds it again instead of fetching anew."""
    grant_id: str | None = None
    """The grant a token belongs to: for a refresh token, the hash of the first refresh token
    of its grant (kept across rotations); for an access token obtained by refresh, its refresh
    token's ``grant_id``. Revoking or losing a grant finds its access tokens by it."""
    token_hash: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not self.value:
            raise ValueError("a token value must be a non-empty string")
        object.__setattr__(self, "token_hash", token_hash(self.value))
        if not isinstance(self.extra, types.MappingProxyType):
            object.__setattr__(self, "extra", _freeze(self.extra))
        if self.introspection is not None and not isinstance(
            self.introspection, types.MappingProxyType
        ):
            object.__setattr__(self, "introspection", _freeze(self.introspection))
        for name in ("scopes", "requested_scopes"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, frozenset):
                object.__setattr__(self, name, frozenset(value))

    @property
    def short_hash(self) -> str:
        """First 12 hex digits of ``token_hash``."""
        return self.token_hash[:12]

    @property
    def key_scopes(self) -> frozenset[str] | None:
        """The scopes the token is cached under: the requested ones when they differ."""
        return self.requested_scopes if self.requested_scopes is not None else self.scopes

    @property
    def scope_key(self) -> str:
        """The canonical string of ``key_scopes`` (``""`` for an empty or unknown scope)."""
        scopes = self.key_scopes
        return canonical(scopes) if scopes else ""

    @property
    def group(self) -> GroupKey:
        """The token's group: kind, issuer, client, subject, resource."""
        return GroupKey(
            self.kind, self.issuer, self.client_id, self.subject or "", self.resource or ""
        )

    def expired(self, now: float) -> bool:
        """Whether the token is past its expiry (unknown expiry never expires)."""
        return self.expires_at is not None and self.expires_at <= now

    def replace(self: _T, **changes: Any) -> _T:
        """A copy with some fields changed (the hash is recomputed)."""
        changes.pop("token_hash", None)
        return dataclasses.replace(self, **changes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Token):
            return NotImplemented
        return self.kind == other.kind and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.token_hash)

    def __repr__(self) -> str:
        scopes = canonical(self.scopes) if self.scopes is not None else None
        return (
            f"{type(self).__name__}(hash={self.short_hash!r}, issuer={self.issuer!r}, "
            f"client_id={self.client_id!r}, subject={self.subject!r}, scopes={scopes!r}, "
            f"expires_at={self.expires_at!r}, resource={self.resource!r}, active={self.active})"
        )

    __str__ = __repr__

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (includes the value: for stores only, never for logs)."""
        return {
            "kind": self.kind,
            "value": self.value,
            "issuer": self.issuer,
            "client_id": self.client_id,
            "subject": self.subject,
            "scopes": sorted(self.scopes) if self.scopes is not None else None,
            "expires_at": self.expires_at,
            "issued_at": self.issued_at,
            "updated_at": self.updated_at,
            "token_type": self.token_type,
            "resource": self.resource,
            "audience": list(self.audience),
            "extra": dict(self.extra),
            "introspected_at": self.introspected_at,
            "active": self.active,
            "introspection": dict(self.introspection) if self.introspection is not None else None,
            "grant_id": self.grant_id,
            "requested_scopes": (
                sorted(self.requested_scopes) if self.requested_scopes is not None else None
            ),
        }

    def to_json(self) -> str:
        """``to_dict`` as compact JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)


@dataclasses.dataclass(frozen=True, slots=True, repr=False, eq=False)
class AccessToken(Token):
    """An access token."""

    kind: ClassVar[TokenKind] = "access"


@dataclasses.dataclass(frozen=True, slots=True, repr=False, eq=False)
class RefreshToken(Token):
    """A refresh token."""

    kind: ClassVar[TokenKind] = "refresh"


@dataclasses.dataclass(frozen=True, slots=True, repr=False, eq=False)
class IDToken(Token):
    """A validated ID token (compact JWT in ``value``). ``claims`` holds its claims;
    ``expires_at`` is when the *record* goes (the token's ``exp`` plus the retention), since
    an expired ID token is still needed as ``id_token_hint`` at logout."""

    kind: ClassVar[TokenKind] = "id"

    @property
    def claims(self) -> Mapping[str, Any]:
        """The ID token's claims (validated when it was stored)."""
        claims = self.extra.get("claims")
        return claims if isinstance(claims, Mapping) else {}


@dataclasses.dataclass(frozen=True, slots=True, repr=False, eq=False)
class UserinfoRecord(Token):
    """A subject's userinfo answer (raw body in ``value``), fetched at ``updated_at``."""

    kind: ClassVar[TokenKind] = "userinfo"

    @property
    def claims(self) -> Mapping[str, Any]:
        """The validated userinfo claims."""
        claims = self.extra.get("claims")
        return claims if isinstance(claims, Mapping) else {}


_KINDS: dict[str, type[Token]] = {
    "access": AccessToken,
    "refresh": RefreshToken,
    "id": IDToken,
    "userinfo": UserinfoRecord,
}
_FIELDS = (
    "value",
    "issuer",
    "client_id",
    "subject",
    "expires_at",
    "issued_at",
    "updated_at",
    "token_type",
    "resource",
    "introspected_at",
    "active",
    "grant_id",
)


_OPTIONAL_FIELDS = frozenset({"subject", "expires_at", "resource", "introspected_at", "grant_id"})
_NUMBER_FIELDS = frozenset({"expires_at", "issued_at", "updated_at", "introspected_at"})


def _checked(name: str, value: Any) -> Any:
    """``value`` if it has the type ``to_dict`` writes for ``name``; else ``TypeError``, or
    ``ValueError`` for a non-finite number (``OverflowError`` for an integer beyond floats)."""
    if value is None and name in _OPTIONAL_FIELDS:
        return value
    if name in _NUMBER_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name} must be a number")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite")
    elif not isinstance(value, bool if name == "active" else str):
        raise TypeError(f"{name} is ill-typed")
    return value


def _scope_field(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise TypeError("scopes must be a list")
    return scope_set(value)  # ValueError for anything but scope tokens


def token_from_dict(data: Mapping[str, Any]) -> Token:
    """Rebuild a token from ``to_dict`` output; ``CorruptEntryError`` (a ``StoreError``) when
    it is not one (a missing or ill-typed field, a non-finite number, an invalid scope token)."""
    try:
        cls = _KINDS[data["kind"]]
        kwargs = {name: _checked(name, data[name]) for name in _FIELDS if name in data}
        audience = data.get("audience") or ()
        extra = data.get("extra") or {}
        introspection = data.get("introspection")
        if not isinstance(audience, list | tuple) or not all(isinstance(a, str) for a in audience):
            raise TypeError("audience must be a list of strings")
        if not isinstance(extra, Mapping) or not isinstance(introspection, Mapping | None):
            raise TypeError("extra and introspection must be objects")
        return cls(
            **kwargs,
            scopes=_scope_field(data.get("scopes")),
            requested_scopes=_scope_field(data.get("requested_scopes")),
            audience=tuple(audience),
            extra=extra,
            introspection=introspection,
        )
    except (KeyError, TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise CorruptEntryError(f"stored token record is malformed: {type(exc).__name__}") from None
