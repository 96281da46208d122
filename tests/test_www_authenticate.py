"""Unit tests of WWW-Authenticate parsing (RFC 7235, RFC 6750) and the retry rules (no I/O)."""

from __future__ import annotations

import pytest

from oauth2_token_manager._www_authenticate import (
    Challenge,
    RetryNewToken,
    RetryWithScopes,
    bearer_challenge,
    parse_challenges,
    retry_action,
)


def test_bearer_with_quoted_parameters() -> None:
    """A Bearer challenge's parameters are read, names lowercased, quotes removed."""
    [c] = parse_challenges(['Bearer realm="api", Error="invalid_token", error_description="x"'])
    assert c.scheme == "bearer"
    assert c.params == {"realm": "api", "error": "invalid_token", "error_description": "x"}


def test_several_challenges_in_one_header_and_across_lines() -> None:
    """Challenges split by commas and over header lines are all found, in order."""
    found = parse_challenges(
        ['Basic realm="a", Bearer realm="b", error="insufficient_scope"', "Negotiate"]
    )
    assert [c.scheme for c in found] == ["basic", "bearer", "negotiate"]
    assert found[1].params == {"realm": "b", "error": "insufficient_scope"}


def test_quoted_strings_keep_commas_and_unescape() -> None:
    """Commas, equals signs and escaped quotes inside quoted strings belong to the value."""
    [c] = parse_challenges([r'Bearer error_description="a, b=\"c\" \\ d", scope="x y"'])
    assert c.params["error_description"] == 'a, b="c" \\ d'
    assert c.params["scope"] == "x y"


def test_token68_and_bare_schemes() -> None:
    """A token68 after the scheme is kept; a scheme with no parameters is a challenge too."""
    found = parse_challenges(["Negotiate YII=, Bearer"])
    assert found == [Challenge("negotiate", {}, "YII="), Challenge("bearer", {}, None)]


def test_whitespace_and_unquoted_values_are_tolerated() -> None:
    """BWS around '=', unquoted token values and empty list elements are accepted."""
    [c] = parse_challenges(["  bearer   realm = api ,, error =invalid_token  "])
    assert c.params == {"realm": "api", "error": "invalid_token"}


def test_garbage_keeps_what_was_read() -> None:
    """An unparsable tail ends the parse without losing the earlier challenges."""
    found = parse_challenges(['Bearer realm="a" @@@ junk', '"only a string"'])
    assert [c.scheme for c in found] == ["bearer"]


def test_bearer_challenge_picks_bearer_among_others() -> None:
    """bearer_challenge returns the Bearer challenge, or None when there is none."""
    challenge = bearer_challenge(['Basic realm="x", Bearer error="invalid_token"'])
    assert challenge is not None and challenge.params["error"] == "invalid_token"
    assert bearer_challenge(['Basic realm="x"']) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (['Bearer error="invalid_token"'], RetryNewToken()),
        (['Bearer realm="x"'], RetryNewToken()),
        ([], RetryNewToken()),
        (['Bearer error="invalid_request"'], None),
    ],
)
def test_401_retries_only_for_invalid_or_unspecified_token(
    headers: list[str], expected: object
) -> None:
    """A 401 retries with a new token for invalid_token or no error, not for other errors."""
    assert retry_action(401, headers, retry_insufficient_scope=False) == expected


def test_403_insufficient_scope_retries_only_when_allowed() -> None:
    """insufficient_scope with a scope retries for that scope only when the option is on."""
    headers = ['Bearer error="insufficient_scope", scope="api:write api:read"']
    assert retry_action(403, headers, retry_insufficient_scope=False) is None
    assert retry_action(403, headers, retry_insufficient_scope=True) == RetryWithScopes(
        frozenset({"api:read", "api:write"})
    )


@pytest.mark.parametrize(
    "headers",
    [
        ['Bearer error="insufficient_scope"'],
        ['Bearer error="insufficient_scope", scope="a\\"b"'],
        ['Bearer error="other", scope="a"'],
    ],
)
def test_403_without_usable_scope_is_returned(headers: list[str]) -> None:
    """A 403 without a valid scope parameter, or with another error, is not retried."""
    assert retry_action(403, headers, retry_insufficient_scope=True) is None


def test_other_statuses_are_never_retried() -> None:
    """Only 401 and 403 can lead to a retry."""
    assert (
        retry_action(500, ['Bearer error="invalid_token"'], retry_insufficient_scope=True) is None
    )
