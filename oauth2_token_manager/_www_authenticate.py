"""``WWW-Authenticate`` challenges (RFC 7235 §4.1, §2.1) and the Bearer rules (RFC 6750 §3).

Parsing rules, liberal as real servers demand:

- A header holds one or more challenges separated by commas; several header lines add up.
  A challenge is a scheme (case-insensitive) followed by either a ``token68`` or a
  comma-separated list of ``name=value`` parameters (names case-insensitive, values a token or
  a quoted string with ``\\`` escapes). A bare token after a comma starts the next challenge.
- Whitespace around ``=`` and commas is ignored; empty list elements (``,,``) are skipped.
  Anything unparsable ends the parse: the challenges read so far are kept.

Retry rules for a request sent with a Bearer token:

- ``401`` whose Bearer challenge says ``error="invalid_token"`` or has no ``error`` (or a 401
  without any Bearer challenge): the token is unusable; get a new one and retry once.
- ``403`` whose Bearer challenge says ``error="insufficient_scope"`` with a ``scope``: when the
  caller allows it, get a token for that scope and retry once.
- Anything else is returned to the caller as it is.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

from ._scopes import parse_scope

__all__ = [
    "Challenge",
    "RetryNewToken",
    "RetryWithScopes",
    "bearer_challenge",
    "parse_challenges",
    "retry_action",
]

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
_TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_PARAM_RE = re.compile(rf"({_TOKEN})[ \t]*=[ \t]*")
_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_OWS_COMMAS = re.compile(r"[ \t,]*")
_OWS = re.compile(r"[ \t]*")


@dataclasses.dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge: its scheme (lowercased), parameters (names lowercased) or token68."""

    scheme: str
    params: Mapping[str, str] = dataclasses.field(default_factory=dict)
    token68: str | None = None


def _skip(pattern: re.Pattern[str], text: str, pos: int) -> int:
    match = pattern.match(text, pos)
    return match.end() if match else pos


def _value_at(text: str, pos: int) -> tuple[str, int] | None:
    quoted = _QUOTED_RE.match(text, pos)
    if quoted:
        return _ESCAPE_RE.sub(r"\1", quoted.group(1)), quoted.end()
    token = _TOKEN_RE.match(text, pos)
    if token:
        return token.group(), token.end()
    return None


def _params_at(text: str, pos: int) -> tuple[dict[str, str], int]:
    """Read ``name=value`` pairs from ``pos`` until something that is not one."""
    params: dict[str, str] = {}
    while True:
        start = _skip(_OWS_COMMAS, text, pos)
        param = _PARAM_RE.match(text, start)
        if not param:
            return params, pos
        value = _value_at(text, param.end())
        if value is None:
            return params, pos
        params.setdefault(param.group(1).lower(), value[0])
        pos = value[1]


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Every challenge in the given ``WWW-Authenticate`` header values, in order."""
    challenges: list[Challenge] = []
    for text in headers:
        pos = 0
        while True:
            pos = _skip(_OWS_COMMAS, text, pos)
            scheme = _TOKEN_RE.match(text, pos)
            if not scheme:
                break
            pos = scheme.end()
            after = _skip(_OWS, text, pos)
            params, end = _params_at(text, pos) if after > pos else ({}, pos)
            token68 = None
            if not params and after > pos:
                candidate = _TOKEN68_RE.match(text, after)
                if candidate:
                    rest = _skip(_OWS, text, candidate.end())
                    if rest == len(text) or text[rest] == ",":
                        token68, end = candidate.group(), candidate.end()
            challenges.append(Challenge(scheme.group().lower(), params, token68))
            pos = end
            nxt = _skip(_OWS, text, pos)
            if nxt < len(text) and text[nxt] != ",":
                break  # garbage: keep what was read
    return challenges


def bearer_challenge(headers: Iterable[str]) -> Challenge | None:
    """The first Bearer challenge, if any."""
    for challenge in parse_challenges(headers):
        if challenge.scheme == "bearer":
            return challenge
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class RetryNewToken:
    """The token was refused: mark it unusable, get another, retry once."""


@dataclasses.dataclass(frozen=True, slots=True)
class RetryWithScopes:
    """The token lacks scope: get one for ``scopes`` and retry once."""

    scopes: frozenset[str]


def retry_action(
    status_code: int, headers: Iterable[str], *, retry_insufficient_scope: bool
) -> RetryNewToken | RetryWithScopes | None:
    """What to do after a protected resource answered ``status_code`` with these challenges."""
    if status_code not in (401, 403):
        return None
    challenge = bearer_challenge(headers)
    error = challenge.params.get("error") if challenge else None
    if status_code == 401:
        return RetryNewToken() if error in (None, "invalid_token") else None
    if not (retry_insufficient_scope and challenge and error == "insufficient_scope"):
        return None
    scope = challenge.params.get("scope")
    if not scope:
        return None
    try:
        scopes = parse_scope(scope)
    except (TypeError, ValueError):
        return None
    return RetryWithScopes(scopes) if scopes else None
