"""The contract every ``TokenStore`` keeps: one suite, run for each store by subclassing.

A subclass provides ``make_store(clock, retain_expired=0.0)`` (a fresh, empty store reading
time from ``clock``) and ``stored_keys(store)`` (every key the backend holds, as text), like
cachetools tests each cache class with one mixin. Each rule of the ``_stores/_base.py``
docstring has a test here; time only moves through the injected ``FakeClock``.

About keys and values: keys must never contain a token value (only its hash); the *values* of
a persistent store do contain the token values (a token cache exists to give them back), which
is why the disk store's file is private (0600) instead.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar

import pytest
from _clock import START, FakeClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oauth2_token_manager._exceptions import InvalidArgumentError, TokenRevokedError
from oauth2_token_manager._models import AccessToken, GroupKey, RefreshToken, Token
from oauth2_token_manager._stores import Page, TokenQuery, TokenStore

ISSUER = "https://issuer.example"
OTHER_ISSUER = "https://other.example"
_serial = itertools.count(1)


def make_token(
    kind: str = "access",
    *,
    value: str | None = None,
    issuer: str = ISSUER,
    client_id: str = "client-1",
    subject: str | None = "alice",
    scopes: frozenset[str] | set[str] | None = frozenset({"read"}),
    expires_at: float | None = START + 3600,
    updated_at: float = 0.0,
    issued_at: float = 0.0,
    resource: str | None = None,
    active: bool = True,
) -> Token:
    """A token with a unique, recognisable value unless one is given."""
    cls = AccessToken if kind == "access" else RefreshToken
    return cls(
        value=value or f"SECRET-{kind}-{next(_serial)}-value",
        issuer=issuer,
        client_id=client_id,
        subject=subject,
        scopes=frozenset(scopes) if scopes is not None else None,
        expires_at=expires_at,
        updated_at=updated_at,
        issued_at=issued_at,
        resource=resource,
        active=active,
    )


def hashes(tokens: Any) -> list[str]:
    """The hashes of ``tokens``, in order."""
    return [t.token_hash for t in tokens]


class StoreContract:
    """Mixin: the store contract. Subclasses define ``make_store`` and ``stored_keys``."""

    hypothesis_examples: ClassVar[int] = 60

    def make_store(self, clock: FakeClock, retain_expired: float = 0.0) -> TokenStore:
        """A fresh empty store using ``clock``."""
        raise NotImplementedError

    def stored_keys(self, store: TokenStore) -> list[str]:
        """Every key the store's backend holds, as text."""
        raise NotImplementedError

    @pytest.fixture
    def clock(self) -> FakeClock:
        """The store's clock, moved by hand."""
        return FakeClock()

    @pytest.fixture
    def store(self, clock: FakeClock) -> TokenStore:
        """A fresh store on ``clock`` without retention."""
        return self.make_store(clock)

    # -- the cross-process lock (stores shared by processes) ---------------------------

    def test_cross_process_lock_is_exclusive_and_owned(self, store: TokenStore) -> None:
        """A shared store's lock: one owner at a time; only the owner renews or releases."""
        if not hasattr(store, "try_lock"):
            pytest.skip("a process-local store needs no cross-process lock")
        locking: Any = store
        assert locking.try_lock("key-1", "owner-a", 30)
        assert not locking.try_lock("key-1", "owner-b", 30)
        assert locking.try_lock("key-2", "owner-b", 30)  # other names are independent
        assert not locking.renew_lock("key-1", "owner-b", 30)
        locking.unlock("key-1", "owner-b")  # not the owner: nothing happens
        assert not locking.try_lock("key-1", "owner-b", 30)
        assert locking.renew_lock("key-1", "owner-a", 30)
        locking.unlock("key-1", "owner-a")
        assert locking.try_lock("key-1", "owner-b", 30)

    @pytest.mark.parametrize("lease", [math.nan, math.inf, -math.inf, -1.0, True, "30"])
    def test_a_lock_lease_is_a_finite_number(self, store: TokenStore, lease: Any) -> None:
        """A NaN, infinite, negative or non-number lease is an ``InvalidArgumentError`` (a NaN
        lease never runs out); no lock is taken."""
        if not hasattr(store, "try_lock"):
            pytest.skip("a process-local store needs no cross-process lock")
        locking: Any = store
        with pytest.raises(InvalidArgumentError):
            locking.try_lock("key-1", "owner-a", lease)
        assert locking.try_lock("key-1", "owner-b", 30)
        with pytest.raises(InvalidArgumentError):
            locking.renew_lock("key-1", "owner-b", lease)
        locking.unlock("key-1", "owner-b")

    # -- OpenID Connect records (ID tokens, userinfo) ------------------------------------

    def test_id_token_and_userinfo_records_round_trip(self, store: TokenStore) -> None:
        """ID tokens and userinfo answers are stored, found by their group and listed by kind
        like tokens, and come back equal (claims included)."""
        from oauth2_token_manager._models import IDToken, UserinfoRecord

        id_token = IDToken(
            "header.payload.signature",
            ISSUER,
            "client-1",
            subject="alice",
            expires_at=START + 3600,
            issued_at=START,
            extra={"claims": {"sub": "alice"}},
        )
        userinfo = UserinfoRecord(
            '{"sub": "alice"}',
            ISSUER,
            "client-1",
            subject="alice",
            expires_at=START + 3600,
            updated_at=START,
            extra={"claims": {"sub": "alice"}},
        )
        store.put(id_token)
        store.put(userinfo)
        assert store.find(id_token.group, None) == [id_token]
        assert store.find(userinfo.group, None) == [userinfo]
        assert isinstance(store.get(id_token.token_hash), IDToken)
        assert store.list(TokenQuery(kind="id")).items == [id_token]
        assert store.list(TokenQuery(kind="userinfo", subject="alice")).total == 1

    # -- protocol, put, get --------------------------------------------------------------

    def test_satisfies_the_protocol(self, store: TokenStore) -> None:
        """The store is a ``TokenStore`` (runtime-checkable protocol)."""
        assert isinstance(store, TokenStore)

    def test_put_then_get_by_hash(self, store: TokenStore) -> None:
        """A stored token is returned, equal, by its hash."""
        token = make_token(scopes={"read", "write"}, resource="https://api", updated_at=5.0)
        store.put(token)
        assert store.get(token.token_hash) == token

    def test_get_unknown_hash_is_none(self, store: TokenStore) -> None:
        """An unknown hash reads as ``None``, not an error."""
        assert store.get(make_token().token_hash) is None

    def test_put_same_hash_replaces(self, store: TokenStore) -> None:
        """``put`` of a stored hash replaces the token instead of adding a second one."""
        token = make_token()
        store.put(token)
        newer = token.replace(updated_at=10.0, extra={"note": "refreshed"}, active=False)
        store.put(newer)
        assert store.get(token.token_hash) == newer
        assert store.find(token.group, "read") == [newer]

    def test_put_with_new_scopes_moves_between_exact_keys(self, store: TokenStore) -> None:
        """Updating a token's scopes moves it from the old exact key to the new one."""
        token = make_token(scopes={"read"})
        store.put(token)
        moved = token.replace(scopes=frozenset({"read", "write"}))
        store.put(moved)
        assert store.find(token.group, "read") == []
        assert store.find(token.group, "read write") == [moved]
        assert store.find(token.group, None) == [moved]
        assert store.get(token.token_hash) == moved

    def test_put_with_new_group_moves_between_groups(self, store: TokenStore) -> None:
        """Changing a group field (here the resource) moves the token to the other group."""
        token = make_token(resource="https://a")
        store.put(token)
        moved = token.replace(resource="https://b")
        store.put(moved)
        assert store.find(token.group, None) == []
        assert store.find(moved.group, "read") == [moved]

    # -- find ----------------------------------------------------------------------------

    def test_find_exact_scope_key(self, store: TokenStore) -> None:
        """``find`` with a scope key returns only the tokens of that canonical scope string."""
        read = make_token(scopes={"read"})
        both = make_token(scopes={"write", "read"})
        store.put(read)
        store.put(both)
        assert store.find(read.group, "read") == [read]
        assert store.find(read.group, "read write") == [both]
        assert store.find(read.group, "write") == []

    def test_find_returns_newest_first(self, store: TokenStore) -> None:
        """Tokens of one key come newest first: by ``updated_at``, then ``issued_at``."""
        a = make_token(updated_at=2.0, issued_at=1.0)
        b = make_token(updated_at=2.0, issued_at=3.0)
        c = make_token(updated_at=1.0, issued_at=9.0)
        for token in (c, a, b):
            store.put(token)
        assert hashes(store.find(a.group, "read")) == hashes([b, a, c])

    def test_find_none_returns_the_whole_group_newest_first(self, store: TokenStore) -> None:
        """``scope_key=None`` returns every token of the group across scope keys, newest first."""
        old = make_token(scopes={"read"}, updated_at=1.0)
        new = make_token(scopes={"write"}, updated_at=3.0)
        mid = make_token(scopes=None, updated_at=2.0)
        for token in (old, new, mid):
            store.put(token)
        store.put(make_token(subject="bob"))
        assert hashes(store.find(old.group, None)) == hashes([new, mid, old])

    def test_empty_and_unknown_scopes_share_the_empty_key(self, store: TokenStore) -> None:
        """Tokens with an empty or unknown scope are both under scope key ``""``."""
        unknown = make_token(scopes=None, updated_at=1.0)
        empty = make_token(scopes=frozenset(), updated_at=2.0)
        store.put(unknown)
        store.put(empty)
        assert hashes(store.find(unknown.group, "")) == hashes([empty, unknown])

    def test_find_unknown_group_or_scope_is_empty(self, store: TokenStore) -> None:
        """A group or scope key with no token reads as an empty list."""
        token = make_token()
        store.put(token)
        assert store.find(token.group, "admin") == []
        assert store.find(GroupKey("access", ISSUER, "nobody", "", ""), None) == []

    @pytest.mark.parametrize(
        "field",
        ["kind", "issuer", "client_id", "subject", "resource"],
    )
    def test_tokens_of_other_groups_are_never_returned(self, store: TokenStore, field: str) -> None:
        """Tokens differing in one group field only never show up in the other's lookups."""
        base: dict[str, Any] = {"scopes": {"read"}}
        changes: dict[str, dict[str, Any]] = {
            "kind": {"kind": "refresh"},
            "issuer": {"issuer": OTHER_ISSUER},
            "client_id": {"client_id": "client-2"},
            "subject": {"subject": None},
            "resource": {"resource": "https://api"},
        }
        other = changes[field]
        mine = make_token(**base)
        theirs = make_token(**{**base, **other})
        store.put(mine)
        store.put(theirs)
        assert mine.group != theirs.group
        assert store.find(mine.group, "read") == [mine]
        assert store.find(mine.group, None) == [mine]
        assert store.find(theirs.group, "read") == [theirs]
        assert store.find(theirs.group, None) == [theirs]

    # -- replace, delete -----------------------------------------------------------------

    def test_replace_rotates(self, store: TokenStore) -> None:
        """``replace`` stores the new token and the old hash is no longer found."""
        old = make_token("refresh")
        store.put(old)
        new = make_token("refresh", updated_at=1.0)
        store.replace(old.token_hash, new)
        assert store.get(old.token_hash) is None
        assert store.get(new.token_hash) == new
        assert store.find(old.group, "read") == [new]

    def test_replace_of_a_missing_old_hash_still_stores_the_new(self, store: TokenStore) -> None:
        """Rotation from a token the store never saw still stores the new one."""
        new = make_token("refresh")
        store.replace(make_token("refresh").token_hash, new)
        assert store.find(new.group, "read") == [new]

    def test_replace_with_the_same_hash_keeps_the_token(self, store: TokenStore) -> None:
        """``replace(h, token)`` where ``token`` has hash ``h`` is an update, not a delete."""
        token = make_token()
        store.put(token)
        updated = token.replace(updated_at=9.0)
        store.replace(token.token_hash, updated)
        assert store.get(token.token_hash) == updated

    def test_replace_into_a_revoked_token_fails_and_keeps_the_old(
        self, store: TokenStore, clock: FakeClock
    ) -> None:
        """A rotation whose new token is revoked raises and leaves the old token in place."""
        old, new = make_token("refresh"), make_token("refresh")
        store.put(old)
        store.revoke(new.token_hash, clock.now + 60)
        with pytest.raises(TokenRevokedError):
            store.replace(old.token_hash, new)
        assert store.get(old.token_hash) == old
        assert store.get(new.token_hash) is None

    def test_delete_returns_and_removes(self, store: TokenStore) -> None:
        """``delete`` returns the removed token; afterwards no lookup finds it."""
        token = make_token()
        store.put(token)
        assert store.delete(token.token_hash) == token
        assert store.get(token.token_hash) is None
        assert store.find(token.group, "read") == []
        assert store.find(token.group, None) == []
        assert store.list(TokenQuery()).total == 0

    def test_delete_of_an_absent_hash_is_none(self, store: TokenStore) -> None:
        """Deleting an unknown hash returns ``None`` and changes nothing."""
        token = make_token()
        store.put(token)
        assert store.delete(make_token().token_hash) is None
        assert store.get(token.token_hash) == token

    def test_delete_keeps_the_other_tokens_of_the_key(self, store: TokenStore) -> None:
        """Deleting one token of an exact key keeps its siblings."""
        a, b = make_token(updated_at=1.0), make_token(updated_at=2.0)
        store.put(a)
        store.put(b)
        store.delete(b.token_hash)
        assert store.find(a.group, "read") == [a]
        assert store.find(a.group, None) == [a]

    # -- revocation ----------------------------------------------------------------------

    def test_revoke_removes_the_token_and_blocks_put(
        self, store: TokenStore, clock: FakeClock
    ) -> None:
        """A revoked token is gone from every lookup and cannot be stored again."""
        token = make_token()
        store.put(token)
        store.revoke(token.token_hash, clock.now + 3600)
        assert store.is_revoked(token.token_hash)
        assert store.get(token.token_hash) is None
        assert store.find(token.group, "read") == []
        assert store.find(token.group, None) == []
        assert store.list(TokenQuery()).total == 0
        with pytest.raises(TokenRevokedError):
            store.put(token)
        with pytest.raises(TokenRevokedError):
            store.put(token.replace(scopes=frozenset({"other"})))
        assert store.get(token.token_hash) is None

    def test_revocation_ends_at_until(self, store: TokenStore, clock: FakeClock) -> None:
        """The hash stays on the list until ``until``; then the token may be stored again."""
        token = make_token(expires_at=clock.now + 86400)
        store.revoke(token.token_hash, clock.now + 100)
        clock.advance(99)
        assert store.is_revoked(token.token_hash)
        clock.advance(1)
        assert not store.is_revoked(token.token_hash)
        store.put(token)
        assert store.get(token.token_hash) == token

    def test_revoke_of_an_unknown_hash_is_recorded(
        self, store: TokenStore, clock: FakeClock
    ) -> None:
        """Revoking a hash never stored still blocks a later ``put`` of it."""
        token = make_token()
        store.revoke(token.token_hash, clock.now + 60)
        assert store.is_revoked(token.token_hash)
        with pytest.raises(TokenRevokedError):
            store.put(token)

    def test_revoke_never_shortens_a_revocation(self, store: TokenStore, clock: FakeClock) -> None:
        """A second ``revoke`` with an earlier ``until`` keeps the later one."""
        token = make_token()
        store.revoke(token.token_hash, clock.now + 1000)
        store.revoke(token.token_hash, clock.now + 10)
        clock.advance(500)
        assert store.is_revoked(token.token_hash)

    def test_revoke_with_until_in_the_past_records_nothing(
        self, store: TokenStore, clock: FakeClock
    ) -> None:
        """``until`` already past removes the token but leaves no revocation."""
        token = make_token()
        store.put(token)
        store.revoke(token.token_hash, clock.now - 1)
        assert store.get(token.token_hash) is None
        assert not store.is_revoked(token.token_hash)

    def test_revoke_refuses_a_token_value(self, store: TokenStore, clock: FakeClock) -> None:
        """``revoke`` takes a hash: a raw token value (which would land in a key) is refused."""
        with pytest.raises(ValueError):
            store.revoke(make_token().value, clock.now + 60)

    def test_unknown_hash_is_not_revoked(self, store: TokenStore) -> None:
        """``is_revoked`` is false for a hash never revoked."""
        assert not store.is_revoked(make_token().token_hash)

    # -- expiry --------------------------------------------------------------------------

    def test_token_is_not_returned_after_its_expiry(
        self, store: TokenStore, clock: FakeClock
    ) -> None:
        """Without retention, lookups stop returning a token once ``expires_at`` is reached."""
        short = make_token(expires_at=clock.now + 10, updated_at=2.0)
        long = make_token(expires_at=clock.now + 1000, updated_at=1.0)
        store.put(short)
        store.put(long)
        clock.advance(9)
        assert hashes(store.find(short.group, "read")) == hashes([short, long])
        clock.advance(1)
        assert store.find(short.group, "read") == [long]
        assert store.find(short.group, None) == [long]
        assert store.get(short.token_hash) is None
        assert hashes(store.list(TokenQuery()).items) == hashes([long])

    def test_retain_expired_keeps_expired_tokens_until_retention_ends(
        self, clock: FakeClock
    ) -> None:
        """With ``retain_expired``, an expired token is still found until that long after."""
        store = self.make_store(clock, retain_expired=100)
        token = make_token(expires_at=clock.now + 10)
        store.put(token)
        clock.advance(50)
        assert store.find(token.group, "read") == [token]
        assert store.get(token.token_hash) == token
        expired = store.list(TokenQuery(status="expired", now=clock.now))
        assert hashes(expired.items) == hashes([token])
        clock.advance(60)
        assert store.find(token.group, "read") == []
        assert store.get(token.token_hash) is None

    def test_unknown_expiry_never_expires(self, store: TokenStore, clock: FakeClock) -> None:
        """A token without ``expires_at`` stays however far the clock moves."""
        token = make_token(expires_at=None)
        store.put(token)
        clock.advance(10 * 365 * 86400)
        assert store.find(token.group, "read") == [token]
        assert store.expunge_expired(clock.now) == 0
        assert store.get(token.token_hash) == token

    def test_put_of_a_token_past_its_deadline_keeps_nothing(
        self, store: TokenStore, clock: FakeClock
    ) -> None:
        """Storing a token already expired (no retention) removes the stored copy, adds none."""
        token = make_token(expires_at=clock.now + 60)
        store.put(token)
        store.put(token.replace(expires_at=clock.now - 1))
        assert store.get(token.token_hash) is None
        assert store.find(token.group, "read") == []

    def test_expunge_expired_counts_and_removes(self, store: TokenStore, clock: FakeClock) -> None:
        """``expunge_expired`` removes every expired token, returns how many, and is idempotent."""
        expiring = [
            make_token(expires_at=clock.now + 10),
            make_token(expires_at=clock.now + 10, scopes={"write"}),
            make_token(expires_at=clock.now + 5, subject="bob"),
        ]
        lasting = [make_token(expires_at=clock.now + 1000), make_token(expires_at=None)]
        for token in expiring + lasting:
            store.put(token)
        clock.advance(20)
        assert store.expunge_expired(clock.now) == 3
        assert store.expunge_expired(clock.now) == 0
        remaining = store.list(TokenQuery())
        assert sorted(hashes(remaining.items)) == sorted(hashes(lasting))
        assert all(store.get(t.token_hash) is None for t in expiring)

    def test_expunge_expired_removes_one_token_of_a_shared_key(
        self, store: TokenStore, clock: FakeClock
    ) -> None:
        """An expired token is expunged even when a longer-lived sibling shares its key."""
        short = make_token(expires_at=clock.now + 10)
        long = make_token(expires_at=clock.now + 1000)
        store.put(short)
        store.put(long)
        clock.advance(20)
        assert store.expunge_expired(clock.now) == 1
        assert store.find(long.group, "read") == [long]
        assert store.get(long.token_hash) == long

    def test_expunge_expired_ignores_retention(self, clock: FakeClock) -> None:
        """``expunge_expired`` removes expired tokens even within ``retain_expired``."""
        store = self.make_store(clock, retain_expired=100)
        token = make_token(expires_at=clock.now + 10, updated_at=2.0)
        lasting = make_token(expires_at=clock.now + 1000, updated_at=1.0)
        store.put(token)
        store.put(lasting)
        clock.advance(20)
        assert store.find(token.group, "read") == [token, lasting]
        assert store.expunge_expired(clock.now) == 1
        assert store.find(token.group, "read") == [lasting]
        assert store.get(token.token_hash) is None

    def test_expunge_expired_uses_the_given_now(self, store: TokenStore, clock: FakeClock) -> None:
        """Expiry is judged at the ``now`` passed in, not at the store's clock."""
        token = make_token(expires_at=clock.now + 10)
        store.put(token)
        assert store.expunge_expired(clock.now + 5) == 0
        assert store.expunge_expired(clock.now + 10) == 1
        assert store.get(token.token_hash) is None

    def test_scoped_expunge_leaves_other_issuers_clients_and_kinds(self, clock: FakeClock) -> None:
        """``expunge_expired(now, query)`` removes the expired tokens of the groups ``query``
        matches only: other issuers', clients' and kinds' expired tokens stay (kept readable
        by ``retain_expired``), and so do the query's own tokens that are not expired."""
        store = self.make_store(clock, retain_expired=100)
        expires = clock.now + 10
        mine = [
            make_token(expires_at=expires),
            make_token(expires_at=expires, subject=None, scopes={"write"}),
        ]
        others = [
            make_token(expires_at=expires, issuer=OTHER_ISSUER),
            make_token(expires_at=expires, client_id="client-2"),
            make_token("refresh", expires_at=expires),
        ]
        lasting = make_token(expires_at=clock.now + 1000)
        for token in [*mine, *others, lasting]:
            store.put(token)
        clock.advance(20)
        query = TokenQuery(issuer=ISSUER, kind="access", client_id="client-1")
        assert store.expunge_expired(clock.now, query) == len(mine)
        assert store.expunge_expired(clock.now, query) == 0
        assert all(store.get(t.token_hash) is None for t in mine)
        assert [store.get(t.token_hash) for t in [*others, lasting]] == [*others, lasting]
        only_bob = TokenQuery(issuer=OTHER_ISSUER, subject="bob")
        assert store.expunge_expired(clock.now, only_bob) == 0  # subject filters too
        assert store.expunge_expired(clock.now) == len(others)  # the store-wide sweep

    def test_expunge_expired_keeps_active_revocations(
        self, store: TokenStore, clock: FakeClock
    ) -> None:
        """Expunging (even with a later ``now``) never lifts a revocation before its ``until``."""
        token = make_token()
        store.revoke(token.token_hash, clock.now + 100)
        store.expunge_expired(clock.now + 1000)
        assert store.is_revoked(token.token_hash)

    # -- list ----------------------------------------------------------------------------

    @pytest.fixture
    def population(self, store: TokenStore, clock: FakeClock) -> dict[str, Token]:
        """A store holding tokens that differ in every listable field."""
        tokens = {
            "alice": make_token(subject="alice", updated_at=7.0),
            "alice_refresh": make_token("refresh", subject="alice", updated_at=6.0),
            "bob": make_token(subject="bob", updated_at=5.0),
            "cc": make_token(subject=None, updated_at=4.0),
            "client2": make_token(client_id="client-2", subject="alice", updated_at=3.0),
            "other_issuer": make_token(issuer=OTHER_ISSUER, subject="alice", updated_at=2.0),
            "expiring": make_token(subject="alice", expires_at=clock.now + 10, updated_at=1.0),
            "inactive": make_token(subject="carol", active=False, updated_at=0.5),
        }
        for token in tokens.values():
            store.put(token)
        return tokens

    def _listed(self, store: TokenStore, population: dict[str, Token], **query: Any) -> set[str]:
        page = store.list(TokenQuery(**query))
        by_hash = {t.token_hash: name for name, t in population.items()}
        assert page.total == len(page.items)
        return {by_hash[t.token_hash] for t in page.items}

    def test_list_all_newest_first(self, store: TokenStore, population: dict[str, Token]) -> None:
        """An empty query lists every token, newest first, with the total."""
        page = store.list(TokenQuery())
        expected = sorted(population.values(), key=lambda t: t.updated_at, reverse=True)
        assert hashes(page.items) == hashes(expected)
        assert page.total == len(population)

    def test_list_filters_by_issuer(self, store: TokenStore, population: dict[str, Token]) -> None:
        """``issuer`` keeps only that issuer's tokens."""
        assert self._listed(store, population, issuer=OTHER_ISSUER) == {"other_issuer"}

    def test_list_filters_by_kind(self, store: TokenStore, population: dict[str, Token]) -> None:
        """``kind`` keeps only access or only refresh tokens."""
        assert self._listed(store, population, kind="refresh") == {"alice_refresh"}
        assert "alice_refresh" not in self._listed(store, population, kind="access")

    def test_list_filters_by_client_id(
        self, store: TokenStore, population: dict[str, Token]
    ) -> None:
        """``client_id`` keeps only that client's tokens."""
        assert self._listed(store, population, client_id="client-2") == {"client2"}

    def test_list_filters_by_subject(self, store: TokenStore, population: dict[str, Token]) -> None:
        """``subject``: ``None`` any, ``""`` client credentials only, a name only that user."""
        assert self._listed(store, population, subject=None) == set(population)
        assert self._listed(store, population, subject="") == {"cc"}
        assert self._listed(store, population, subject="alice") == {
            "alice",
            "alice_refresh",
            "client2",
            "other_issuer",
            "expiring",
        }

    def test_list_filters_by_status(
        self, store: TokenStore, population: dict[str, Token], clock: FakeClock
    ) -> None:
        """``status`` valid/expired/all is judged at the query's ``now``; inactive is not valid."""
        later = clock.now + 20
        assert self._listed(store, population, status="expired", now=later) == {"expiring"}
        assert self._listed(store, population, status="valid", now=later) == set(population) - {
            "expiring",
            "inactive",
        }
        assert self._listed(store, population, status="all", now=later) == set(population)
        assert "expiring" in self._listed(store, population, status="valid", now=clock.now)

    def test_list_combines_filters(self, store: TokenStore, population: dict[str, Token]) -> None:
        """Several filters together keep the tokens matching all of them."""
        listed = self._listed(
            store, population, issuer=ISSUER, kind="access", client_id="client-1", subject="alice"
        )
        assert listed == {"alice", "expiring"}

    def test_list_pages_with_total(self, store: TokenStore, population: dict[str, Token]) -> None:
        """``offset``/``limit`` page through the newest-first order; ``total`` counts all."""
        everything = hashes(store.list(TokenQuery()).items)
        pages: list[str] = []
        for offset in range(0, len(everything), 3):
            page = store.list(TokenQuery(offset=offset, limit=3))
            assert (page.total, page.offset, page.limit) == (len(everything), offset, 3)
            assert len(page.items) <= 3
            pages += hashes(page.items)
        assert pages == everything
        beyond = store.list(TokenQuery(offset=100, limit=3))
        assert (list(beyond.items), beyond.total) == ([], len(everything))
        assert store.list(TokenQuery(limit=0)).items == []

    def test_list_of_an_empty_store(self, store: TokenStore) -> None:
        """An empty store lists nothing with total 0."""
        page = store.list(TokenQuery())
        assert isinstance(page, Page)
        assert (list(page.items), page.total) == ([], 0)

    # -- keys ----------------------------------------------------------------------------

    def test_keys_hold_hashes_never_token_values(self, store: TokenStore, clock: FakeClock) -> None:
        """No backend key contains a token value; tokens are keyed by their hash."""
        tokens = [make_token(), make_token("refresh", scopes=None), make_token(subject=None)]
        for token in tokens:
            store.put(token)
        revoked = make_token()
        store.put(revoked)
        store.revoke(revoked.token_hash, clock.now + 60)
        keys = self.stored_keys(store)
        assert keys
        for token in [*tokens, revoked]:
            assert not any(token.value in key for key in keys), token
        assert any(tokens[0].token_hash in key for key in keys)
        assert any(revoked.token_hash in key for key in keys)

    # -- against a model -----------------------------------------------------------------

    def test_random_operations_agree_with_a_model(self) -> None:
        """Random put/replace/delete/revoke/expunge/clock sequences match a dict model."""
        examples = self.hypothesis_examples

        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(st.lists(_OPERATION, max_size=25))
        def run(operations: list[tuple[Any, ...]]) -> None:
            _run_model(self.make_store, operations)

        run()


# -- the model check -----------------------------------------------------------------------

_POOL_VALUES = [f"SECRET-pool-{i}" for i in range(6)]
_POOL_GROUPS: list[dict[str, Any]] = [
    {"subject": "alice"},
    {"subject": "bob"},
    {"subject": None, "resource": "https://api"},
]
_POOL_SCOPES = [frozenset({"read"}), frozenset({"read", "write"}), None]

_TOKEN = st.builds(
    lambda value, group, scopes, expires, updated, kind: make_token(
        kind,
        value=value,
        scopes=scopes,
        expires_at=None if expires is None else START + expires,
        updated_at=float(updated),
        **group,
    ),
    st.sampled_from(_POOL_VALUES),
    st.sampled_from(_POOL_GROUPS),
    st.sampled_from(_POOL_SCOPES),
    st.one_of(st.none(), st.integers(-5, 60)),
    st.integers(0, 3),
    st.sampled_from(["access", "refresh"]),
)
_HASH = st.sampled_from(_POOL_VALUES).map(lambda v: make_token(value=v).token_hash)
_OPERATION = st.one_of(
    st.tuples(st.just("put"), _TOKEN),
    st.tuples(st.just("replace"), _HASH, _TOKEN),
    st.tuples(st.just("delete"), _HASH),
    st.tuples(st.just("revoke"), _HASH, st.integers(-5, 40)),
    st.tuples(st.just("advance"), st.integers(1, 30)),
    st.tuples(st.just("expunge")),
)


def _run_model(make_store: Any, operations: list[tuple[Any, ...]]) -> None:
    """Apply ``operations`` to a fresh store and to a dict model; compare after each."""
    clock = FakeClock()
    store: TokenStore = make_store(clock)
    model: dict[str, Token] = {}
    revoked: dict[str, float] = {}

    def alive(token: Token) -> bool:
        return token.expires_at is None or token.expires_at > clock.now

    def is_revoked(token_hash: str) -> bool:
        return revoked.get(token_hash, -1.0) > clock.now

    def model_put(token: Token) -> None:
        if alive(token):
            model[token.token_hash] = token
        else:
            model.pop(token.token_hash, None)

    for operation in operations:
        name = operation[0]
        if name == "put" or name == "replace":
            token = operation[-1]
            if is_revoked(token.token_hash):
                with pytest.raises(TokenRevokedError):
                    if name == "put":
                        store.put(token)
                    else:
                        store.replace(operation[1], token)
                continue
            if name == "put":
                store.put(token)
            else:
                store.replace(operation[1], token)
            model_put(token)
            if name == "replace" and operation[1] != token.token_hash:
                model.pop(operation[1], None)
        elif name == "delete":
            expected = model.pop(operation[1], None)
            result = store.delete(operation[1])
            assert result == (expected if expected is not None and alive(expected) else None)
        elif name == "revoke":
            until = clock.now + operation[2]
            store.revoke(operation[1], until)
            model.pop(operation[1], None)
            if until > clock.now:
                revoked[operation[1]] = max(until, revoked.get(operation[1], until))
        elif name == "advance":
            clock.advance(operation[1])
        else:
            dead = sum(1 for t in model.values() if not alive(t))
            # Stores may have dropped some expired tokens already (e.g. on a write).
            assert 0 <= store.expunge_expired(clock.now) <= dead
            model = {h: t for h, t in model.items() if alive(t)}
        _compare(store, model, revoked, clock, alive)


def _compare(
    store: TokenStore,
    model: dict[str, Token],
    revoked: dict[str, float],
    clock: FakeClock,
    alive: Any,
) -> None:
    """The store answers every lookup as the model does."""
    visible = {h: t for h, t in model.items() if alive(t)}
    for value in _POOL_VALUES:
        token_hash = make_token(value=value).token_hash
        assert store.get(token_hash) == visible.get(token_hash)
        assert store.is_revoked(token_hash) == (revoked.get(token_hash, -1.0) > clock.now)
    groups = {t.group for t in visible.values()}
    for kind in ("access", "refresh"):
        for fields in _POOL_GROUPS:
            groups.add(make_token(kind, **fields).group)
    for group in groups:
        in_group = [t for t in visible.values() if t.group == group]
        found = store.find(group, None)
        assert sorted(hashes(found)) == sorted(hashes(in_group))
        _assert_newest_first(found)
        for scopes in _POOL_SCOPES:
            key = make_token(scopes=scopes).scope_key
            exact = store.find(group, key)
            assert sorted(hashes(exact)) == sorted(
                hashes(t for t in in_group if t.scope_key == key)
            )
            assert exact == [t for t in found if t.scope_key == key]
    page = store.list(TokenQuery())
    assert page.total == len(visible)
    assert sorted(hashes(page.items)) == sorted(visible)


def _assert_newest_first(tokens: list[Token]) -> None:
    keys = [(t.updated_at, t.issued_at) for t in tokens]
    assert keys == sorted(keys, reverse=True)
