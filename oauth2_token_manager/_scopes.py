"""Scopes, by RFC 6749 §3.3: one canonicaliser, one rule, used for every scope the library
reads (a caller's argument, a server's answer, a stored record).

Rules stated once here:

- A scope is a set of case-sensitive scope tokens: order and duplicates mean nothing.
- A scope token is one or more characters from ``%x21 / %x23-5B / %x5D-7E`` (NQCHAR: printable
  ASCII except space, ``"`` and ``\\``).
- A scope is given either as a ``str`` or as a collection of ``str``:

  - a ``str`` is an RFC 6749 scope string: space-delimited scope tokens. It is split on spaces;
    extra spaces (leading, trailing, doubled) are tolerated, since servers send them. ``""`` is
    the empty scope.
  - any other iterable holds exactly one scope token per entry. An entry that is not a ``str``,
    is empty, contains whitespace or a character outside NQCHAR is refused: ``["a b"]`` is an
    error, not two tokens (one entry, one token, so that a typo never widens a request).

  Anything else raises ``InvalidArgumentError`` (a ``ValueError``); ``parse_scope`` (a server's
  value) also accepts JSON arrays and raises ``TypeError`` for other JSON types.
- The canonical form of a scope is its tokens sorted and joined by one space (``scope_string``);
  the empty scope's is ``""``. Stores key tokens by it, and it is the ``scope`` parameter sent.
- Matching a stored token against a request: ``exact`` (sets equal, the default) or
  ``superset`` (the stored set contains the requested one). A request of ``None`` matches any
  token. A refresh token may serve a request when its scopes are a superset of the request;
  a refresh token registered without scope (unknown) may serve any request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from ._exceptions import InvalidArgumentError

__all__ = [
    "ScopeMatch",
    "canonical",
    "normalize",
    "parse_scope",
    "scope_set",
    "scope_string",
]

ScopeMatch = Literal["exact", "superset"]

_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")

# Scope inputs already seen, as (set, canonical string): the hot path of ``get`` canonicalises
# the caller's scopes on every call. Bounded so that hostile input cannot grow it without limit.
_CACHE: dict[str | tuple[object, ...], tuple[frozenset[str], str]] = {}
_CACHE_MAX = 4096


def _tokens(scopes: str | tuple[object, ...]) -> frozenset[str]:
    """The rule of the module docstring, uncached."""
    entries = [t for t in scopes.split(" ") if t] if isinstance(scopes, str) else scopes
    for entry in entries:
        if not isinstance(entry, str):
            raise InvalidArgumentError(
                f"a scope token must be a string, not {type(entry).__name__}"
            )
        if not _SCOPE_TOKEN.fullmatch(entry):
            raise InvalidArgumentError(f"invalid scope token {entry[:40]!r} (RFC 6749 §3.3)")
    return frozenset(entries)  # type: ignore[arg-type]  # every entry is a str (checked)


def normalize(scopes: str | Iterable[str]) -> tuple[frozenset[str], str]:
    """A scope as (set of tokens, canonical string), validated; cached for the hot path."""
    if isinstance(scopes, str):
        key: str | tuple[object, ...] = scopes
    else:
        try:
            key = tuple(scopes)
        except TypeError:
            raise InvalidArgumentError(
                f"a scope is a string or a list of strings, not {type(scopes).__name__}"
            ) from None
    try:
        cached = _CACHE.get(key)
    except TypeError:  # an unhashable entry: refused below
        cached = None
    if cached is not None:
        return cached
    tokens = _tokens(key)
    result = (tokens, " ".join(sorted(tokens)))
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[key] = result
    return result


def scope_set(scopes: str | Iterable[str]) -> frozenset[str]:
    """The set of scope tokens of ``scopes`` (see the rule above)."""
    return normalize(scopes)[0]


def scope_string(scopes: str | Iterable[str]) -> str:
    """The canonical string of ``scopes``: sorted tokens joined by one space."""
    return normalize(scopes)[1]


canonical = scope_string
"""Another name of ``scope_string`` (the stores' word for it)."""


def parse_scope(value: object) -> frozenset[str]:
    """A ``scope`` value from a server: a scope string or a JSON array of scope tokens.

    Other types raise ``TypeError``; invalid tokens ``InvalidArgumentError`` (a ``ValueError``).
    """
    if isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(t, str) for t in value)
    ):
        return scope_set(value)
    raise TypeError(f"scope must be a string, not {type(value).__name__}")
