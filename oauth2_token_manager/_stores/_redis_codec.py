"""The line encoding of the Redis stores, and what both of them share besides I/O.

Shared by ``AsyncRedisStore`` and ``RedisStore`` (``_async_redis.py`` and the ``_redis.py``
generated from it); the key layout is described there, the scripts in ``_redis_lua``.

- Ids: ``gid`` is the SHA-256 of the JSON of the group (as ``DiskStore`` hashes it), ``sid`` the
  SHA-256 of the JSON of the scope key; an exact entry is named ``gid:sid``. So no key holds a
  token value, a subject, a client id or a scope.
- An exact entry is a JSON array with one token per line, newest first
  (``"[\\n" + ",\\n".join(lines) + "\\n]"``), so the scripts can split it without a JSON
  encoder. Each line is ``Token.to_dict()`` plus ``"token_hash"``, as compact ASCII JSON (never a
  raw newline in it); ``find`` of an exact key reads it with one ``json.loads``.
- With ``encryption_keys`` (see ``_crypto``) each line is instead
  ``{"token_hash", "expires_at", "updated_at", "issued_at", "key_id", "encrypted"}``: the fields
  the scripts read stay beside ``encrypted``, the Fernet token of the compact JSON of
  ``Token.to_dict()`` (value included), and ``key_id`` names the key that wrote it. So the
  scripts never need a key, and ``find`` stays one ``GET`` plus one decryption per token. A line
  read back is checked against its clear fields. Without keys the lines are the plain ones
  above. Revocations, hash refs and group entries (which name the group's issuer, client,
  subject and resource) hold no token value and stay plain.
- A line of the other mode (encrypted without keys, plain with keys) or of an unknown key is a
  ``StoreError``, never a token.
- Redis failures become ``StoreError`` naming the kind of failure, never an argument or a
  value (a server reply shows only its error code: it may quote what it was sent).

No I/O here: the stores call these on what they send and what Redis answers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._exceptions import CorruptEntryError, StoreError
from .._models import GroupKey, Token, token_from_dict
from ._crypto import ENCRYPTED_WITHOUT_KEY, NOT_ENCRYPTED, Cipher
from ._redis_lua import ERROR_MARK

__all__ = [
    "NOT_JSON",
    "as_text",
    "chunks",
    "decode_lines",
    "decrypt_line",
    "encode_line",
    "entry_tokens",
    "exact_id",
    "group_id",
    "is_exact_id",
    "parse_entry",
    "parse_group",
    "rotated_entry",
    "script_number",
    "store_error",
]

NOT_JSON = "the Redis token store holds an entry that is not valid JSON"
_EXACT_ID = re.compile(r"[0-9a-f]{64}:[0-9a-f]{64}")


@functools.lru_cache(maxsize=4096)
def group_id(group: GroupKey) -> tuple[str, str]:
    """(SHA-256 of the group's JSON, that JSON)."""
    text = json.dumps(list(group), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest(), text


@functools.lru_cache(maxsize=4096)
def exact_id(group: GroupKey, scope_key: str) -> str:
    """``gid:sid`` of (group, scope key) (memoised: it is on the hot path)."""
    sid = hashlib.sha256(json.dumps(scope_key).encode()).hexdigest()
    return group_id(group)[0] + ":" + sid


def as_text(value: Any) -> str:
    """A reply item as text (clients may or may not decode responses)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def script_number(value: float) -> str:
    """A float as exact text for a script argument."""
    return repr(float(value))


def _compact(data: Any, token: Token) -> str:
    """Compact ASCII JSON (never a raw newline), or ``StoreError`` naming the token's hash."""
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"token {token.short_hash} is not storable as JSON: {exc}") from None


def encode_line(token: Token, cipher: Cipher | None) -> str:
    """The stored form of one token: plain, or the clear fields the scripts read beside the
    encrypted payload."""
    data = token.to_dict()
    if cipher is None:
        data["token_hash"] = token.token_hash
        return _compact(data, token)
    key_id, sealed = cipher.seal(_compact(data, token).encode())
    clear = {
        "token_hash": token.token_hash,
        "expires_at": token.expires_at,
        "updated_at": token.updated_at,
        "issued_at": token.issued_at,
        "key_id": key_id,
        "encrypted": sealed,
    }
    return _compact(clear, token)


def parse_entry(raw: Any) -> list[dict[str, Any]]:
    """The lines of a stored exact entry, parsed; ``StoreError`` when it is not one."""
    try:
        data = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        raise CorruptEntryError(NOT_JSON) from None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise CorruptEntryError("stored token entry is malformed: not a list of tokens")
    return data


def decrypt_line(item: dict[str, Any], cipher: Cipher) -> Token:
    """The token of an encrypted line, checked against the line's clear fields."""
    if "encrypted" not in item:
        raise StoreError(NOT_ENCRYPTED)
    payload = cipher.open(item.get("key_id"), item.get("encrypted"))
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        raise CorruptEntryError(NOT_JSON) from None
    if not isinstance(data, dict):
        raise CorruptEntryError("stored token entry is malformed: not a token")
    token = token_from_dict(data)
    clear = [item.get(name) for name in ("token_hash", "expires_at", "updated_at", "issued_at")]
    if clear != [token.token_hash, token.expires_at, token.updated_at, token.issued_at]:
        raise CorruptEntryError(
            "stored token entry is inconsistent: clear fields differ from its token"
        )
    return token


def decode_lines(items: list[dict[str, Any]], cipher: Cipher | None) -> list[Token]:
    """The tokens of parsed lines: decrypted when the store has keys."""
    if cipher is not None:
        return [decrypt_line(item, cipher) for item in items]
    try:
        return [token_from_dict(item) for item in items]
    except StoreError:
        if any("encrypted" in item for item in items):
            raise StoreError(ENCRYPTED_WITHOUT_KEY) from None
        raise


def entry_tokens(raw: Any, cipher: Cipher | None) -> list[Token]:
    """The tokens of a stored exact entry; ``StoreError`` when it is not one (or when it cannot
    be decrypted)."""
    return decode_lines(parse_entry(raw), cipher)


def rotated_entry(text: str, cipher: Cipher, encrypt_plaintext: bool) -> tuple[str, int]:
    """An exact entry with every line another key wrote (or, with ``encrypt_plaintext``, every
    plain line) encrypted with the first key, and how many lines changed."""
    if not (text.startswith("[\n") and text.endswith("\n]")):
        raise StoreError("stored token entry is malformed")
    lines: list[str] = []
    changed = 0
    for line in text[2:-2].split("\n"):
        line = line.removesuffix(",")
        if not line:
            continue
        [item] = parse_entry("[" + line + "]")
        if "encrypted" not in item:
            if not encrypt_plaintext:
                raise StoreError(NOT_ENCRYPTED)
            [token] = decode_lines([item], None)
            line = encode_line(token, cipher)
        elif item.get("key_id") != cipher.primary_id:
            token = decrypt_line(item, cipher)
            line = encode_line(token, cipher)
        else:
            lines.append(line)
            continue
        lines.append(line)
        changed += 1
    return "[\n" + ",\n".join(lines) + "\n]", changed


def parse_group(text: str) -> GroupKey:
    """A group from its stored JSON; ``StoreError`` when it is not one."""
    try:
        fields = json.loads(text)
        group = GroupKey(*fields)
    except (TypeError, ValueError, RecursionError):
        raise CorruptEntryError("stored group entry is malformed") from None
    if not all(isinstance(f, str) for f in group):
        raise CorruptEntryError("stored group entry is malformed")
    return group


def store_error(exc: RedisError) -> StoreError:
    """Our error for a Redis one: the kind of failure, never an argument or a value."""
    if isinstance(exc, RedisResponseError):
        text = str(exc)
        if text.startswith(ERROR_MARK):
            detail = text[len(ERROR_MARK) :].split(" script:", 1)[0]
            return StoreError(f"Redis token store: {detail}")
        code = text.split(" ", 1)[0] if text else ""
        return StoreError(f"Redis token store failed: {type(exc).__name__} {code}".rstrip())
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        return StoreError(f"Redis token store failed: {type(exc).__name__}: {exc}")
    return StoreError(f"Redis token store failed: {type(exc).__name__}")


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """``items`` in slices of ``size`` (one script call or ``MGET`` each)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def is_exact_id(text: str) -> bool:
    """Whether ``text`` is a ``gid:sid`` (what a hash ref holds)."""
    return _EXACT_ID.fullmatch(text) is not None
