"""Unit tests of scope rules (RFC 6749 §3.3) and of the token models (no I/O)."""

from __future__ import annotations

import pickle

import pytest

from oauth2_token_manager import (
    AccessToken,
    ClientConfig,
    InvalidArgumentError,
    RefreshToken,
    StoreError,
)
from oauth2_token_manager._models import (
    hash_argument,
    hash_prefix,
    is_hash_prefix,
    is_token_hash,
    match_hash,
    short_hash,
    token_from_dict,
    token_hash,
)
from oauth2_token_manager._scopes import (
    canonical,
    normalize,
    parse_scope,
    scope_set,
    scope_string,
)


def test_canonical_form_is_sorted_and_deduplicated() -> None:
    """Order and duplicates do not matter: one canonical string per scope set."""
    assert canonical(["b", "a", "b"]) == "a b"
    assert canonical("b a") == "a b"
    assert canonical([]) == ""


@pytest.mark.parametrize("bad", ["a b\\", 'x"', "caf\u00e9", "", "tab\t"])
def test_invalid_scope_tokens_are_rejected(bad: str) -> None:
    """Characters outside %x21 / %x23-5B / %x5D-7E are not scope tokens."""
    with pytest.raises(ValueError, match="invalid scope token"):
        scope_set([bad])


def test_parse_scope_tolerates_extra_spaces_and_lists() -> None:
    """Servers' "a  b" strings and JSON arrays both parse; other types are TypeError."""
    assert parse_scope("a  b ") == frozenset({"a", "b"})
    assert parse_scope(["a", "b"]) == frozenset({"a", "b"})
    with pytest.raises(TypeError):
        parse_scope(3)


def test_a_string_is_split_and_a_list_holds_one_token_per_entry() -> None:
    """One rule for every input: a str is a scope string; a list entry is exactly one token."""
    assert scope_set(" b  a ") == frozenset({"a", "b"})
    assert scope_string("") == "" == scope_string([])
    for bad in (["a b"], [""], ["a\tb"], [None], [["a"]], 3):
        with pytest.raises(InvalidArgumentError):
            normalize(bad)  # type: ignore[arg-type]
    assert canonical is scope_string


def test_normalize_returns_set_and_key_and_validates() -> None:
    """normalize gives (set, canonical key) and still rejects invalid tokens."""
    assert normalize(["b", "a"]) == (frozenset({"a", "b"}), "a b")
    assert normalize("x y") == (frozenset({"x", "y"}), "x y")
    with pytest.raises(ValueError):
        normalize(['"'])


def test_hash_helpers_never_guess() -> None:
    """short_hash always hashes its value (even one that looks like a hash); hash_prefix
    shortens a hash already computed."""
    looks_like_a_hash = "ab" * 32
    assert is_token_hash(looks_like_a_hash) and not is_token_hash("AB" * 32)
    assert short_hash(looks_like_a_hash) == token_hash(looks_like_a_hash)[:12]
    assert short_hash(looks_like_a_hash) != looks_like_a_hash[:12]
    assert hash_prefix(token_hash("v")) == token_hash("v")[:12]


def test_is_hash_prefix_takes_8_to_64_lowercase_hex_digits() -> None:
    """is_hash_prefix accepts a full hash or a prefix of 8+ lowercase hex digits, nothing else."""
    digest = token_hash("v")
    assert is_hash_prefix(digest) and is_hash_prefix(digest[:8])
    assert not is_hash_prefix(digest[:7]) and not is_hash_prefix(digest + "0")
    assert not is_hash_prefix(digest.upper()) and not is_hash_prefix("g" * 12)
    assert not is_hash_prefix(None) and not is_hash_prefix(digest[:12] + "\n")


def test_hash_argument_lowercases_and_refuses_what_is_no_hash() -> None:
    """hash_argument takes 8-64 hex digits in either case (lowercased); anything else is an
    InvalidArgumentError."""
    digest = token_hash("v")
    assert hash_argument(digest.upper()) == digest
    assert hash_argument(digest[:8]) == digest[:8]
    for bad in (digest[:7], digest + "0", "g" * 12, None, 12345678):
        with pytest.raises(InvalidArgumentError, match="8 to 64 hex digits"):
            hash_argument(bad)


def test_match_hash_finds_the_one_hash_a_prefix_names() -> None:
    """match_hash returns the unique hash a full hash or prefix names, None for none, and an
    InvalidArgumentError naming the count (not the hashes) when several share the prefix."""
    hashes = ["aaaaaaaa11", "aaaaaaaa22", "bbbbbbbb33"]
    assert match_hash("bbbbbbbb", hashes) == "bbbbbbbb33"
    assert match_hash("aaaaaaaa11", hashes) == "aaaaaaaa11"
    assert match_hash("cccccccc", hashes) is None
    with pytest.raises(InvalidArgumentError, match="matches 2 tokens") as info:
        match_hash("aaaaaaaa", hashes)
    assert "11" not in str(info.value) and "22" not in str(info.value)


def test_token_repr_and_str_hide_the_value() -> None:
    """repr/str show a short hash, never the token value."""
    token = AccessToken("super-secret-value", "https://as", "c", scopes={"a"})
    assert "super-secret-value" not in repr(token)
    assert "super-secret-value" not in str(token)
    assert token.short_hash in repr(token)
    assert token.token_hash == token_hash("super-secret-value")
    assert short_hash("super-secret-value") == token.short_hash


def test_token_is_immutable_and_round_trips_through_dict() -> None:
    """Tokens are frozen; to_dict/token_from_dict restore an equal token of the same kind."""
    token = RefreshToken(
        "v",
        "https://as",
        "c",
        subject="alice",
        scopes={"a"},
        expires_at=5.0,
        extra={"k": [1]},
        introspection={"active": True},
    )
    with pytest.raises(AttributeError):
        token.value = "x"  # type: ignore[misc]
    copy = token_from_dict(token.to_dict())
    assert isinstance(copy, RefreshToken)
    assert copy == token
    assert copy.group == token.group


def test_malformed_record_is_a_store_error() -> None:
    """A record that is not a token raises StoreError without echoing its content."""
    with pytest.raises(StoreError):
        token_from_dict({"kind": "access", "value": "secret"})
    with pytest.raises(StoreError):
        token_from_dict({"kind": "bogus"})


def test_replace_recomputes_the_hash() -> None:
    """Changing the value (rotation) changes the hash."""
    token = RefreshToken("old", "https://as", "c")
    assert token.replace(value="new").token_hash == token_hash("new")


def test_client_config_hides_and_refuses_pickling() -> None:
    """The client secret never shows in repr and credentials are never pickled."""
    config = ClientConfig("cid", "topsecret")
    assert "topsecret" not in repr(config)
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(config)
