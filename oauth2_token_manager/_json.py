"""The one strict JSON reader for every JSON document the library accepts from outside. Pure.

Token, introspection and error responses, discovery metadata, userinfo, JWK Sets, JWT headers
and payloads, and JSON given on the command line are all read by :func:`loads` (any JSON
value) or :func:`loads_object` (the document must be a JSON object). Rules:

- One JSON text (RFC 8259), optionally surrounded by whitespace; trailing data is refused.
- ``bytes`` must be UTF-8 (RFC 8259 §8.1: JSON exchanged between systems is UTF-8); UTF-16,
  UTF-32, Latin-1 and invalid UTF-8 (including encoded surrogates) are refused. One leading
  byte order mark (``EF BB BF`` in bytes, U+FEFF in text) is ignored, as §8.1 allows parsers
  to do: static file hosting sometimes serves files saved with one. A second mark, or one
  anywhere else outside a string, is a syntax error.
- No duplicate keys in any object, at any depth: they are ambiguous (which ``sub``, which
  ``issuer``?) and parsers disagree about which one wins (RFC 8259 §4, RFC 7493 §2.3).
- No ``NaN``, ``Infinity`` or ``-Infinity`` (Python extensions, not JSON), and no number
  literal beyond the float range (``1e400``, which Python would read as infinity): every
  float in a document is finite.
- Nesting deeper than :data:`MAX_DEPTH` (128) arrays and objects is refused, whatever the
  stack: Python's own parser stops at its recursion limit *minus the caller's stack depth*,
  so its limit moves, and code that walks a parsed document recursively (freezing metadata,
  merging claims, encoding a store record) must not meet a ``RecursionError`` on a document
  the reader accepted. Real documents nest a few levels (.NET stops at 64, serde_json at 128).
- An integer with more digits than Python's int-string conversion limit is refused (instead
  of a bare ``ValueError``); large integers within that limit are kept exactly.

Every refusal is a :class:`JSONDocumentError` (a ``ValueError``) whose message is a short
phrase that reads after "is" ("not JSON (...)", "ambiguous JSON (...)", "JSON nested too
deeply (...)", "JSON but not an object (array)"). It never quotes the document, not even a key:
the document may hold a token. ``kind`` says which rule was broken; callers map the error to
their own typed exception (``InvalidResponseError``, ``UserinfoError``, ``IDTokenError``...).

:func:`describe` is the one description of a response body for error messages: status,
content type and length, never the body.

Not read here: the stores' own records (DiskStore lines, Redis values). They are the
library's own data, written by ``json.dumps``, and stay on plain ``json`` for speed.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final, Literal

__all__ = [
    "MAX_DEPTH",
    "JSONDocumentError",
    "JSONProblem",
    "describe",
    "loads",
    "loads_object",
]

JSONProblem = Literal[
    "encoding",  # bytes that are not UTF-8
    "syntax",  # not one JSON text
    "duplicate_key",  # an object with a key twice
    "constant",  # NaN, Infinity, -Infinity
    "overflow",  # a number literal beyond the float range
    "depth",  # nested deeper than MAX_DEPTH
    "integer",  # more digits than Python's int-string conversion limit
    "not_object",  # valid JSON, but not the object the caller requires
]
"""Which rule a refused document broke."""

MALFORMED: Final[frozenset[JSONProblem]] = frozenset({"encoding", "syntax"})
"""Kinds meaning "not JSON at all" (rather than JSON refused for what it contains)."""

MAX_DEPTH: Final = 128
"""The deepest nesting of arrays and objects accepted (``[]`` is depth 1)."""
_TOO_DEEP: Final = f"JSON nested too deeply (more than {MAX_DEPTH} levels)"

_BOM: Final = "\ufeff"
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")  # RFC 8259 §2 insignificant whitespace


class JSONDocumentError(ValueError):
    """A JSON document was refused; ``str()`` is the reason (never quoting the document)."""

    def __init__(self, kind: JSONProblem, reason: str) -> None:
        super().__init__(reason)
        self.kind: JSONProblem = kind
        self.reason = reason

    @property
    def malformed(self) -> bool:
        """True when the document is not JSON at all: not UTF-8, or not the JSON grammar."""
        return self.kind in MALFORMED

    def __repr__(self) -> str:
        return f"JSONDocumentError({self.kind!r}, {self.reason!r})"


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise JSONDocumentError("duplicate_key", "ambiguous JSON (an object has a duplicate key)")
    return result


def _constant(name: str) -> Any:
    # ``name`` is one of three fixed spellings chosen by the parser, not document text.
    raise JSONDocumentError("constant", f"ambiguous JSON ({name} is not a JSON number)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONDocumentError("overflow", "ambiguous JSON (a number beyond the float range)")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # only the int-string conversion limit fails on a JSON integer
        raise JSONDocumentError(
            "integer", "JSON with an integer longer than Python converts"
        ) from None


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_object, parse_constant=_constant, parse_float=_float, parse_int=_int
)


def _skip_whitespace(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    return match.end() if match else pos


def loads(document: bytes | bytearray | str) -> Any:
    """The JSON value of ``document`` under the module's rules, or ``JSONDocumentError``."""
    if isinstance(document, (bytes, bytearray)):
        try:
            text = bytes(document).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONDocumentError(
                "encoding", f"not JSON (not UTF-8: invalid byte at offset {exc.start})"
            ) from None
    elif isinstance(document, str):
        text = document
    else:
        raise TypeError(f"a JSON document is bytes or str, not {type(document).__name__}")
    start = 1 if text.startswith(_BOM) else 0  # positions stay those of the document
    try:
        value, end = _DECODER.raw_decode(text, _skip_whitespace(text, start))
        end = _skip_whitespace(text, end)
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    except json.JSONDecodeError as exc:
        # exc.msg is the parser's fixed wording ("Expecting value"...), never document text.
        where = f"line {exc.lineno} column {exc.colno} (char {exc.pos})"
        raise JSONDocumentError("syntax", f"not JSON ({exc.msg}: {where})") from None
    except RecursionError:
        raise JSONDocumentError("depth", _TOO_DEEP) from None
    # Only a document with more opening brackets than MAX_DEPTH can nest deeper: most are
    # settled by two C-speed counts, the others by an iterative walk of the parsed value.
    if text.count("[") + text.count("{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise JSONDocumentError("depth", _TOO_DEEP)
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (dict, list)):
            continue
        if depth > limit:
            return True
        stack.extend(
            (child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)
        )
    return False


_JSON_TYPES: Final = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def loads_object(document: bytes | bytearray | str) -> dict[str, Any]:
    """Like :func:`loads`, and the value must be a JSON object (``kind="not_object"``)."""
    value = loads(document)
    if not isinstance(value, dict):
        name = _JSON_TYPES.get(type(value), type(value).__name__)
        raise JSONDocumentError("not_object", f"JSON but not an object ({name})")
    return value


def describe(content: bytes, content_type: str | None, status: int | None = None) -> str:
    """A response body for messages: ``HTTP 200, text/html, looks like HTML, 512 bytes``.

    The status (when given), the ``Content-Type`` label (cut to 80 characters) and the length;
    an empty or blank body, and one that looks like an HTML page, are said so. The body's text
    is never included: it may echo a credential.
    """
    parts = [f"HTTP {status}"] if status is not None else []
    parts.append(content_type[:80] if content_type else "no content type")
    stripped = content.lstrip()
    if not content:
        parts.append("empty body")
    elif not stripped:
        parts.append(f"blank body, {len(content)} bytes")
    else:
        if stripped[:1] == b"<":
            parts.append("looks like HTML")
        parts.append(f"{len(content)} bytes")
    return ", ".join(parts)
