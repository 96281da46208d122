"""Encryption of stored tokens at rest: Fernet (cryptography) with several keys for rotation.

A store given ``encryption_keys`` (``DiskStore``, ``RedisStore``, ``AsyncRedisStore``) keeps
every token *payload* (``Token.to_dict()`` as JSON, value included) as a Fernet token: AES-128-CBC
plus HMAC-SHA256, so a copy of the file or of the Redis data is unreadable without a key, and a
modified payload is refused. The first key encrypts; every key decrypts (as ``MultiFernet``);
``rotate_encryption()`` re-encrypts what other keys wrote with the first one.

Each encrypted payload is stored with the *id* of its key: the first 16 hex digits of a SHA-256
of the key under a fixed label (a 256-bit random key cannot be recovered from it). The id tells
"written with a key this store does not have" apart from corruption, lets Redis scripts refuse
to mix keys in one entry without decrypting anything, and lets rotation skip what the first key
wrote. Keys stay as they are (hashes), and what holds no token value (revocations, indexes, the
hash, expiry and sort times Redis scripts read) is not encrypted.

Rolling out a new key B over a store encrypted with A: give every process ``[A, B]`` (A still
encrypts, B is accepted), then ``[B, A]``, run ``rotate_encryption()`` once, then ``[B]``.

``cryptography`` is an optional dependency (``oauth2_token_manager[encryption]``), imported
only when keys are given or a key is generated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from .._exceptions import ConfigurationError, StoreError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

__all__ = [
    "ENCRYPTED_WITHOUT_KEY",
    "NOT_ENCRYPTED",
    "WRONG_KEY",
    "Cipher",
    "EncryptingStore",
    "generate_encryption_key",
    "make_cipher",
]

WRONG_KEY = "cannot decrypt a stored token entry: wrong or missing encryption key"
ENCRYPTED_WITHOUT_KEY = (
    "cannot decrypt a stored token entry: it is encrypted and this store has no "
    "encryption key (wrong or missing encryption key)"
)
NOT_ENCRYPTED = (
    "cannot decrypt a stored token entry: it is not encrypted, but this store has "
    "encryption keys (wrong or missing encryption key; written by a store without them)"
)
_INSTALL = (
    "encrypting the token store needs the cryptography package: "
    "pip install 'oauth2_token_manager[encryption]'"
)
_ID_LABEL = b"oauth2_token_manager encryption key id\x00"


def _fernet_class() -> type[Fernet]:
    try:
        from cryptography.fernet import Fernet
    except ImportError:
        raise ImportError(_INSTALL) from None
    return Fernet


def generate_encryption_key() -> str:
    """A new random Fernet key (32 bytes, url-safe base64) for ``encryption_keys``."""
    return _fernet_class().generate_key().decode("ascii")


def _key_id(raw: bytes) -> str:
    """A public name of a key: 16 hex digits of a labelled SHA-256 (not the key itself)."""
    return hashlib.sha256(_ID_LABEL + raw).hexdigest()[:16]


class Cipher:
    """Fernet with rotation: ``seal`` with the first key, ``open`` with any of them.

    Holds the keys (as ``Fernet`` objects) and nothing else; ``repr`` shows their number only
    and pickling is refused, so the keys never end up in a log or a pickle by accident.
    """

    __slots__ = ("_by_id", "_invalid_token", "_primary", "_primary_id")

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if isinstance(keys, (str, bytes)):
            raise ConfigurationError("encryption_keys takes a sequence of keys, not one key")
        keys = list(keys)
        if not keys:
            raise ConfigurationError("encryption_keys must hold at least one key")
        fernet = _fernet_class()
        from cryptography.fernet import InvalidToken

        self._invalid_token = InvalidToken
        by_id: dict[str, Fernet] = {}
        primary_id = ""
        for number, key in enumerate(keys, 1):
            if not isinstance(key, (str, bytes)):
                raise ConfigurationError(f"encryption key #{number} is not a str or bytes")
            try:
                raw = base64.urlsafe_b64decode(key)
                if len(raw) != 32:
                    raise ValueError
                instance = fernet(key)
            except (ValueError, binascii.Error):
                raise ConfigurationError(
                    f"encryption key #{number} is not a Fernet key (32 url-safe base64-encoded "
                    "bytes; see generate_encryption_key())"
                ) from None
            key_id = _key_id(raw)
            by_id.setdefault(key_id, instance)
            if number == 1:
                primary_id = key_id
        self._by_id = by_id
        self._primary_id = primary_id
        self._primary = by_id[primary_id]

    def __repr__(self) -> str:
        return f"Cipher({self.described})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("encryption keys are not pickled")

    @property
    def key_count(self) -> int:
        """How many distinct keys decrypt."""
        return len(self._by_id)

    @property
    def described(self) -> str:
        """How a ``repr`` shows the keys: their number only, as ``<2 keys>``."""
        count = self.key_count
        return f"<{count} key{'' if count == 1 else 's'}>"

    @property
    def primary_id(self) -> str:
        """The id of the key that encrypts (the first one)."""
        return self._primary_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of every key, the first one first."""
        return tuple(self._by_id)

    def seal(self, payload: bytes) -> tuple[str, str]:
        """(key id, Fernet token) of ``payload`` encrypted with the first key."""
        return self._primary_id, self._primary.encrypt(payload).decode("ascii")

    def open(self, key_id: object, token: object) -> bytes:
        """The payload of a Fernet token written with the key ``key_id``.

        ``StoreError`` (naming no key and no payload) when this store has no such key, the token
        does not verify (wrong key, modified data) or the fields are not text.
        """
        if not isinstance(key_id, str) or not isinstance(token, str):
            raise StoreError("stored encrypted entry is malformed")
        fernet = self._by_id.get(key_id)
        if fernet is None:
            raise StoreError(WRONG_KEY)
        try:
            return fernet.decrypt(token)
        except (self._invalid_token, ValueError):  # ValueError: not ASCII
            raise StoreError(WRONG_KEY) from None


def make_cipher(keys: Sequence[str | bytes] | None) -> Cipher | None:
    """The ``Cipher`` of a store's ``encryption_keys`` (``None``: no encryption)."""
    return None if keys is None else Cipher(keys)


class EncryptingStore:
    """What a store taking ``encryption_keys`` shows of them: ``encrypted``, and in its repr the
    number of keys (never a key)."""

    _cipher: Cipher | None

    @property
    def encrypted(self) -> bool:
        """Whether the tokens are stored encrypted (``encryption_keys`` given)."""
        return self._cipher is not None

    def _keys_repr(self) -> str:
        """``", encryption_keys=<n keys>"`` for the repr, ``""`` without encryption."""
        return "" if self._cipher is None else f", encryption_keys={self._cipher.described}"
