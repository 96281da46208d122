"""Unit tests of the strict JSON reader ``_json`` (every refusal, and what it still accepts)."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from oauth2_token_manager._json import (
    MAX_DEPTH,
    JSONDocumentError,
    describe,
    loads,
    loads_object,
)

SECRET = "SECRET-token-0123456789"


def refusal(document: bytes | str) -> JSONDocumentError:
    """The error ``loads`` raises for ``document`` (the test fails if it returns)."""
    with pytest.raises(JSONDocumentError) as info:
        loads(document)
    return info.value


# --- accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "value"),
    [
        (b'{"a": [1, 2.5, "x", true, null]}', {"a": [1, 2.5, "x", True, None]}),
        ('{"a": {"b": {}}}', {"a": {"b": {}}}),
        (b" \t\r\n[]\n ", []),
        (b'"caf\xc3\xa9"', "caf\u00e9"),
        (b"-0", 0),
        (b"1e-400", 0.0),
    ],
)
def test_valid_documents_parse_as_json_does(document: bytes | str, value: Any) -> None:
    """Ordinary JSON, as bytes or text, with surrounding whitespace, reads as json.loads does."""
    assert loads(document) == value


def test_large_integers_within_the_limit_are_exact() -> None:
    """An integer of a few hundred digits is kept exactly (it is not a float)."""
    assert loads(b"1" + b"0" * 400) == 10**400


@pytest.mark.parametrize("document", [b'\xef\xbb\xbf{"a": 1}', '\ufeff{"a": 1}'])
def test_one_leading_byte_order_mark_is_ignored(document: bytes | str) -> None:
    """One UTF-8 BOM (bytes) or U+FEFF (text) before the document is skipped (RFC 8259 §8.1)."""
    assert loads(document) == {"a": 1}


def test_bytearray_is_read_like_bytes() -> None:
    """A bytearray body is decoded like bytes."""
    assert loads(bytearray(b"[1]")) == [1]


# --- refused --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [b"\xff{}", b'{"a": "\xed\xa0\x80"}', '{"a": 1}'.encode("utf-16"), b'{"a": "\xe9"}'],
)
def test_bytes_that_are_not_utf8_are_refused(document: bytes) -> None:
    """Invalid UTF-8, encoded surrogates, UTF-16 with its BOM and Latin-1 are 'encoding'."""
    error = refusal(document)
    assert error.kind == "encoding" and error.malformed
    assert str(error).startswith("not JSON (not UTF-8")


def test_utf16_without_bom_is_not_json() -> None:
    """UTF-16 without a BOM decodes as UTF-8 with NUL characters: not the JSON grammar."""
    error = refusal('{"a": 1}'.encode("utf-16-le"))
    assert error.kind == "syntax" and error.malformed


@pytest.mark.parametrize(
    "document",
    [b"", b"   ", b"<html>login</html>", b"[1] [2]", b'{"a": 1,}', b"{'a': 1}", b'"open'],
)
def test_text_that_is_not_one_json_value_is_a_syntax_error(document: bytes) -> None:
    """Empty or blank bodies, HTML, two values, trailing commas: 'syntax', with a position."""
    error = refusal(document)
    assert error.kind == "syntax" and error.malformed
    assert str(error).startswith("not JSON (") and "line 1 column" in str(error)


@pytest.mark.parametrize(
    "document", [b'\xef\xbb\xbf\xef\xbb\xbf{"a": 1}', b' \xef\xbb\xbf{"a": 1}', b"[1]\xef\xbb\xbf"]
)
def test_a_second_or_misplaced_byte_order_mark_is_a_syntax_error(document: bytes) -> None:
    """Only one leading BOM is skipped; another, or one after whitespace or data, is refused."""
    assert refusal(document).kind == "syntax"


def test_syntax_positions_count_the_skipped_byte_order_mark() -> None:
    """Positions in the message are those of the document, BOM included."""
    assert "(char 1)" in str(refusal("\ufeff!"))


@pytest.mark.parametrize(
    "document",
    [
        b'{"sub": "alice", "sub": "mallory"}',
        b'{"a": {"b": 1, "b": 1}}',
        b'[{"x": 1}, {"x": 1, "x": 2}]',
    ],
)
def test_duplicate_keys_at_any_depth_are_refused(document: bytes) -> None:
    """A key twice in one object, even with the same value or nested: 'duplicate_key'."""
    error = refusal(document)
    assert error.kind == "duplicate_key" and not error.malformed
    assert "ambiguous" in str(error)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(constant: str) -> None:
    """Python's NaN/Infinity extensions are not JSON numbers: 'constant'."""
    error = refusal(f'{{"expires_in": {constant}}}')
    assert error.kind == "constant" and "ambiguous" in str(error)


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "1.5E+999"])
def test_numbers_beyond_the_float_range_are_refused(literal: str) -> None:
    """A literal Python would read as infinity is refused ('overflow'): floats are finite."""
    assert refusal(f"[{literal}]").kind == "overflow"


def nested(depth: int, kind: str) -> bytes:
    """``depth`` arrays or objects, one inside the other."""
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


@pytest.mark.parametrize("kind", ["array", "object"])
def test_nesting_deeper_than_python_parses_is_refused(kind: str) -> None:
    """Nesting far beyond the recursion limit is kind 'depth', not a RecursionError."""
    error = refusal(nested(sys.getrecursionlimit() * 100, kind))
    assert error.kind == "depth" and str(error).startswith("JSON nested too deeply")


@pytest.mark.parametrize("kind", ["array", "object"])
def test_nesting_limit_is_max_depth_whatever_the_stack(kind: str) -> None:
    """MAX_DEPTH levels are read, one more is refused: a fixed limit, below the point where
    recursive code walking the value (or Python's parser, on a deep stack) would fail."""
    assert loads(nested(MAX_DEPTH, kind))
    error = refusal(nested(MAX_DEPTH + 1, kind))
    assert error.kind == "depth"
    assert str(error) == f"JSON nested too deeply (more than {MAX_DEPTH} levels)"
    assert sys.getrecursionlimit() > MAX_DEPTH * 4


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    """Many brackets in string values and wide (not deep) documents are accepted."""
    assert loads(json.dumps({"a": "[{" * 1000}).encode()) == {"a": "[{" * 1000}
    wide = [[[i]] for i in range(MAX_DEPTH * 10)]
    assert loads(json.dumps(wide)) == wide


def test_integers_beyond_the_conversion_limit_are_refused() -> None:
    """An integer longer than Python's int-string limit is 'integer', not a bare ValueError."""
    limit = getattr(sys, "get_int_max_str_digits", lambda: 0)()
    if not limit:
        pytest.skip("this Python has no int-string conversion limit")
    error = refusal(b'{"exp": ' + b"9" * (limit + 1) + b"}")
    assert error.kind == "integer" and isinstance(error, ValueError)


def test_other_argument_types_are_a_type_error() -> None:
    """Only bytes and str are documents: anything else is a programming error."""
    with pytest.raises(TypeError):
        loads(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("document", "name"),
    [(b"[1]", "array"), (b'"s"', "string"), (b"1", "number"), (b"true", "boolean"),
     (b"null", "null")],
)  # fmt: skip
def test_loads_object_requires_an_object(document: bytes, name: str) -> None:
    """loads_object refuses any other JSON value ('not_object'), naming its JSON type."""
    with pytest.raises(JSONDocumentError) as info:
        loads_object(document)
    assert info.value.kind == "not_object" and not info.value.malformed
    assert str(info.value) == f"JSON but not an object ({name})"
    assert loads_object(b'{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(
    "document",
    [
        f'{{"{SECRET}": 1, "{SECRET}": 2}}',
        f'{{"access_token": "{SECRET}", "x": NaN}}',
        f'{{"access_token": "{SECRET}"',
        f'["{SECRET}"] {SECRET}',
        f'"{SECRET}"',
    ],
)
def test_errors_never_quote_the_document(document: str) -> None:
    """The message and repr of every refusal hold no part of the document, not even a key."""
    with pytest.raises(JSONDocumentError) as info:
        loads_object(document.encode())
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert SECRET not in str(refusal(document.encode("utf-16")))


# --- describe -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "content_type", "status", "text"),
    [
        (b"", None, 401, "HTTP 401, no content type, empty body"),
        (b"  \n", "text/plain", None, "text/plain, blank body, 3 bytes"),
        (b" <html>x</html>", "text/html", 200, "HTTP 200, text/html, looks like HTML, 15 bytes"),
        (SECRET.encode(), "application/json", 500, "HTTP 500, application/json, 23 bytes"),
        (b"{}", "x" * 200, None, "x" * 80 + ", 2 bytes"),
    ],
)
def test_describe_says_status_type_and_length_never_the_body(
    content: bytes, content_type: str | None, status: int | None, text: str
) -> None:
    """describe gives status, content type (cut to 80 characters), HTML-ness and length only."""
    assert describe(content, content_type, status) == text
