"""Scopes, by RFC 6749 §3.3.

Rules stated once here:

- A scope is a list of space-delimited, case-sensitive scope tokens; the order does not matter
  and duplicates mean nothing: a scope is a *set*.
- A scope token is one or more characters from ``%x21 / %x23-5B / %x5D-7E``: printable ASCII
  except space, ``"`` and ``\\``. Anything else is rejected with ``ValueError``.
- The canonical form of a scope is its tokens sorted and joined by one space; the empty scope's
  canonical form is ``""``. Stores key tokens by this form.
- Matching a stored token against a request: ``exact`` (sets equal, the default) or
  ``superset`` (the stored set contains the requested one). A request of ``None`` matches any
  token. A refresh token may serve a request when its scopes are a superset of the request;
  a refresh token registered without scope (unknown) may serve any request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

__all__ = ["ScopeMatch", "canonical", "is_superset", "normalize", "parse_scope", "scope_set"]

ScopeMatch = Literal["exact", "superset"]

_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")

# Canonical forms of scope inputs already seen: the hot path of ``get`` canonicalises the
# caller's scopes on every call. Bounded so that hostile input cannot grow it without limit.
_CANONICAL_CACHE: dict[tuple[str, ...], str] = {}
_NORMAL_CACHE: dict[tuple[str, ...], tuple[frozenset[str], str]] = {}
_CANONICAL_CACHE_MAX = 4096


def scope_set(scopes: Iterable[str]) -> frozenset[str]:
    """Validate scope tokens and return them as a set."""
    if isinstance(scopes, str):
        scopes = scopes.split(" ")
    tokens = frozenset(scopes)
    for token in tokens:
        if not isinstance(token, str) or not _SCOPE_TOKEN.fullmatch(token):
            raise ValueError(f"invalid scope token {token!r} (RFC 6749 §3.3)")
    return tokens


def parse_scope(value: object) -> frozenset[str]:
    """Parse a ``scope`` value from a server (a space-delimited string) into a set.

    Empty strings between several spaces are tolerated (servers send ``"a  b"``); a list of
    strings is accepted too (some servers send JSON arrays). Other types raise ``TypeError``.
    """
    if isinstance(value, str):
        return scope_set(t for t in value.split(" ") if t)
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return scope_set(value)
    raise TypeError(f"scope must be a string, not {type(value).__name__}")


def canonical(scopes: Iterable[str]) -> str:
    """The canonical string of a scope: sorted tokens joined by a space."""
    if isinstance(scopes, str):  # a scope string; "" is the empty scope (its canonical form)
        scopes = () if not scopes else (scopes,) if " " not in scopes else tuple(scopes.split(" "))
    key = tuple(scopes)
    cached = _CANONICAL_CACHE.get(key)
    if cached is not None:
        return cached
    result = " ".join(sorted(scope_set(key)))
    if len(_CANONICAL_CACHE) >= _CANONICAL_CACHE_MAX:
        _CANONICAL_CACHE.clear()
    _CANONICAL_CACHE[key] = result
    return result


def is_superset(have: frozenset[str], want: frozenset[str]) -> bool:
    """Whether a token holding ``have`` may serve a request for ``want``."""
    return have >= want


def normalize(scopes: Iterable[str]) -> tuple[frozenset[str], str]:
    """A requested scope as (set, canonical string), validated; cached for the hot path."""
    key = (scopes,) if isinstance(scopes, str) else tuple(scopes)
    cached = _NORMAL_CACHE.get(key)
    if cached is not None:
        return cached
    tokens = scope_set(t for s in key for t in s.split(" ") if t) if key else frozenset()
    result = (tokens, " ".join(sorted(tokens)))
    if len(_NORMAL_CACHE) >= _CANONICAL_CACHE_MAX:
        _NORMAL_CACHE.clear()
    _NORMAL_CACHE[key] = result
    return result
