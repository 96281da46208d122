"""The fault matrix: every fault of ``_fault_proxy`` on every operation, against the real server.

Each cell builds a fresh ``Issuer`` (new ``MemoryStore``, fake clock at the real time) whose
httpx client routes the server's origin through the fault proxy (``FaultProxy.mounts``), sets
the operation up through the proxy without a fault, snapshots the store, arms the fault for
the operation's path, runs the operation once, snapshots again, and runs it once more with the
fault gone. A cell passes when:

- the caller got a typed error (an ``OAuth2TokenManagerError``), or, for refresh ahead, the
  still-valid cached token, or the operation succeeded and the cell is listed in ``TOLERATED``
  with the reason it is legitimate;
- after an error (or a kept token) the store lists exactly what it listed before (hashes and
  every field); the subject's refresh token is still there;
- the next call, without the fault, succeeds.

Cells in ``NOT_APPLICABLE`` are not run: their reason says why the fault cannot reach that
operation. Options: ``timeout=0.5`` (the client's timeout while the faulted call runs, so a
held answer fails in half a second; setup and recovery calls get 10 s, so a slow machine does
not fail a setup step), ``retry=RetryPolicy(attempts=1)`` and ``failure_cache=0`` (every call
really reaches the proxy), ``min_introspect_interval=0``. The server runs without
refresh-token rotation: every fault but ``refused`` lets the server process the request before
the answer is broken, and with rotation a lost answer would (rightly) leave the client with a
consumed refresh token.

``scripts/fault_table`` runs the same scenarios (``open_lab``, ``Lab.run``) and prints the
table that ``docs/faults.md`` holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from _authserver import AuthServer, obtain_refresh_token
from _fault_proxy import BAD_RETRY_AFTER, FAULTS, OVERSIZE_BYTES, Exchange, FaultProxy
from conftest import ISSUED, FakeClock, _remember_tokens

from oauth2_token_manager import (
    AccessToken,
    AccessTokenManager,
    ClaimsManager,
    ClientConfig,
    InvalidResponseError,
    Issuer,
    MemoryStore,
    OAuth2TokenManagerError,
    RefreshTokenManager,
    ResponseError,
    RetryPolicy,
    Token,
    TokenQuery,
    TransportError,
)
from oauth2_token_manager._metadata import DEFAULT_RETRY_AFTER_FAILURE

pytestmark = pytest.mark.integration

CLIENT_ID = "basic-client"
SUBJECT = "alice"
USER_SCOPES = ("openid", "offline_access", "api:read", "profile", "email")
CC_SCOPES = ("api:read",)
TIMEOUT = 0.5
"""The client's timeout while the faulted call runs (``read_timeout`` fails after it)."""
SETUP_TIMEOUT = 10.0
"""The client's timeout for setting a cell up and for the recovery call (a slow machine
must not fail a setup step)."""

OPERATIONS: dict[str, str] = {
    "get": "client-credentials get",
    "refresh": "refresh (access token expired)",
    "refresh_ahead": "refresh ahead (access token still valid)",
    "introspect": "introspect",
    "revoke": "revoke",
    "discovery": "discovery (fresh Issuer)",
    "userinfo": "userinfo",
}
"""Operation name -> what it does."""

TRANSPORT_FAULTS = ("refused", "no_answer", "reset_mid_body", "read_timeout")
STATUS_FAULTS = {
    "http_500": 500,
    "http_502": 502,
    "http_503_retry_after": 503,
    "http_503_bad_retry_after": 503,
    "http_429": 429,
}
RETRY_AFTER = {
    "http_503_retry_after": "2",
    "http_503_bad_retry_after": BAD_RETRY_AFTER,
    "http_429": "1",
}
OVERSIZED_FAULTS = ("oversized_declared", "oversized_chunked", "gzip_bomb")
TRANSIENT_FAULTS = (*TRANSPORT_FAULTS, "http_502", *RETRY_AFTER)
"""Faults the library classes as transient (``_retry.is_transient``)."""
TOKEN_FIELD_FAULTS = (
    "missing_access_token",
    "unknown_token_type",
    "expires_in_negative",
    "expires_in_zero",
    "expires_in_huge",
    "expires_in_numeric_string",
    "expires_in_word",
)
TOKEN_OPERATIONS = ("get", "refresh", "refresh_ahead")


def _not_applicable() -> dict[tuple[str, str], str]:
    cells: dict[tuple[str, str], str] = {}
    for fault in TOKEN_FIELD_FAULTS:
        cells[fault, "revoke"] = "the revocation answer is an empty 200: there is no field to break"
        cells[fault, "discovery"] = "a metadata document has no token fields"
        cells[fault, "userinfo"] = "userinfo claims have no token fields"
        if fault != "unknown_token_type":
            cells[fault, "introspect"] = (
                "an introspection answer (RFC 7662) has neither access_token nor expires_in"
            )
    cells["text_plain_json", "revoke"] = "the real revocation answer already is an empty text/plain"
    cells["duplicate_keys", "revoke"] = "the revocation answer is empty: no JSON key to repeat"
    return cells


NOT_APPLICABLE = _not_applicable()
"""(fault, operation) -> why the fault cannot reach the operation; these cells are not run."""

_DISCOVERY_FALLBACK = tuple(
    (f, "discovery") for f in ("html_200", "invalid_json", "truncated_json")
)
_LIBERAL_TYPE = "the content type is not checked: the body is parsed as JSON whatever its label"
_REVOKE_BODY = "RFC 7009 §2.2: the 200 status is the answer; the body is read (bounded) but unused"
TOLERATED: dict[tuple[str, str], str] = {
    **{(f, "revoke"): _REVOKE_BODY for f in ("html_200", "invalid_json", "truncated_json")},
    **{
        ("text_plain_json", op): _LIBERAL_TYPE
        for op in (*TOKEN_OPERATIONS, "introspect", "discovery")
    },
    **{
        ("expires_in_numeric_string", op): "a numeric string is a valid expires_in (3600 s kept)"
        for op in TOKEN_OPERATIONS
    },
    ("unknown_token_type", "introspect"): (
        "RFC 7662 token_type is informational: introspection does not use it"
    ),
    **{
        cell: (
            "not a JSON object at the OpenID URL means no document there: discovery falls back "
            "to the RFC 8414 URL, which answers"
        )
        for cell in _DISCOVERY_FALLBACK
    },
}
"""(fault, operation) -> why the operation legitimately succeeds under the fault."""

KNOWN_DEFECTS: dict[tuple[str, str], str] = {}
"""(fault, operation) -> a library defect this cell exposes (the test is a strict xfail)."""

CELLS = [(f, op) for f in FAULTS for op in OPERATIONS if (f, op) not in NOT_APPLICABLE]
"""Every (fault, operation) pair that is run."""


# --- the scenarios ---------------------------------------------------------------------------


def snapshot(store: MemoryStore) -> list[tuple[str, str]]:
    """Every listed record as (hash, its fields as JSON without the value), sorted."""
    items = store.list(TokenQuery()).items
    return sorted(
        (t.token_hash, json.dumps({k: v for k, v in t.to_dict().items() if k != "value"}))
        for t in items
    )


@dataclasses.dataclass
class Cell:
    """An operation set up on one issuer: ``act`` runs it, ``recover`` checks the next call."""

    act: Callable[[], object]
    recover: Callable[[], object]
    kept: Token | None = None
    """Refresh ahead: the still-valid token the caller may be given."""
    watched: Token | None = None
    """Revoke: the token the call itself removes from the store and puts on the local
    revocation list before the request (``revoke`` does so whatever the server answers)."""


@dataclasses.dataclass
class Outcome:
    """What one fault did to one operation."""

    fault: str
    operation: str
    kind: str
    """``error``, ``kept`` (refresh ahead kept the valid token) or ``accepted`` (succeeded)."""
    error: BaseException | None
    result: object
    store_changed: bool
    """The listed records differ from before (for revoke: other than the revoked token)."""
    store_diff: str
    refresh_token_kept: bool | None
    recovered: bool
    recovery_error: str | None
    hits: int | None
    paths: list[str]
    """The paths the operation requested while the fault was armed."""
    exchange: Exchange | None
    now: float
    revocation_listed: bool | None
    seconds: float
    proxy_errors: list[str]
    """Exceptions in the proxy's own code during the cell (there should be none)."""

    @property
    def typed(self) -> bool:
        return self.error is None or isinstance(self.error, OAuth2TokenManagerError)

    @property
    def label(self) -> str:
        """The table cell: the error class, ``kept token`` or ``accepted``."""
        if self.error is not None:
            return type(self.error).__name__
        return "kept token" if self.kind == "kept" else "accepted"

    def describe_error(self) -> str:
        if self.error is None:
            return "no error"
        return "".join(traceback.format_exception(self.error)).strip()


class Lab:
    """The server, the proxy in front of it and a refresh token of ``SUBJECT`` (no rotation)."""

    def __init__(self, server: AuthServer, proxy: FaultProxy, refresh_token: str) -> None:
        self.server = server
        self.proxy = proxy
        self.refresh_token = refresh_token
        self.paths = {
            "get": _path(server.token_endpoint),
            "refresh": _path(server.token_endpoint),
            "refresh_ahead": _path(server.token_endpoint),
            "introspect": _path(server.introspection_endpoint),
            "revoke": _path(server.revocation_endpoint),
            "discovery": _path(server.discovery_url),
            "userinfo": _path(server.userinfo_endpoint),
        }

    def issuer(self, clock: FakeClock, http: httpx.Client) -> Issuer:
        """An issuer talking to the server through the proxy, with a fresh store."""
        return Issuer(
            self.server.issuer,
            ClientConfig(CLIENT_ID, self.server.client_secret(CLIENT_ID)),
            store=MemoryStore(clock=clock, retain_expired=3600),
            http=http,
            allow_insecure_loopback=True,
            timeout=TIMEOUT,
            retry=RetryPolicy(attempts=1),
            failure_cache=0,
            min_introspect_interval=0,
            clock=clock,
        )

    def run(self, fault: str, operation: str) -> Outcome:
        """Set ``operation`` up, break it with ``fault`` once, then call it again."""
        clock = FakeClock(time.time())
        with httpx.Client(mounts=self.proxy.mounts(), timeout=SETUP_TIMEOUT) as http:
            issuer = self.issuer(clock, http)
            store = issuer.store
            assert isinstance(store, MemoryStore)
            cell = SETUPS[operation](self, issuer, clock)
            before = snapshot(store)
            seen = len(self.proxy.exchanges)
            errors_seen = len(self.proxy.errors)
            error: BaseException | None = None
            result: object = None
            started = time.perf_counter()
            http.timeout = httpx.Timeout(TIMEOUT)
            with self._armed(fault, self.paths[operation]) as hits:
                try:
                    result = cell.act()
                except Exception as exc:
                    error = exc
            seconds = time.perf_counter() - started
            http.timeout = httpx.Timeout(SETUP_TIMEOUT)
            exchanges = self.proxy.exchanges[seen:]
            exchange = next((e for e in exchanges if e.fault == fault), None)
            if exchange is not None:
                exchange.done.wait(10)
            after = snapshot(store)
            if cell.watched is not None:  # what revoke does locally, fault or not
                before = [item for item in before if item[0] != cell.watched.token_hash]
            kind = "error" if error is not None else "accepted"
            if (
                error is None
                and cell.kept is not None
                and isinstance(result, Token)
                and result.token_hash == cell.kept.token_hash
            ):
                kind = "kept"
            refresh_kept = None
            if operation in ("refresh", "refresh_ahead", "userinfo"):
                refresh_kept = any(
                    t.kind == "refresh" and t.value == self.refresh_token
                    for t in store.list(TokenQuery()).items
                )
            revocation_listed = (
                store.is_revoked(cell.watched.token_hash) if cell.watched is not None else None
            )
            recovery_error = None
            try:
                cell.recover()
            except Exception as exc:
                recovery_error = "".join(traceback.format_exception(exc)).strip()
            return Outcome(
                fault=fault,
                operation=operation,
                kind=kind,
                error=error,
                result=result,
                store_changed=before != after,
                store_diff=_diff(before, after),
                refresh_token_kept=refresh_kept,
                recovered=recovery_error is None,
                recovery_error=recovery_error,
                hits=hits[0] if hits else None,
                paths=[e.path for e in exchanges],
                exchange=exchange,
                now=clock.now,
                revocation_listed=revocation_listed,
                seconds=seconds,
                proxy_errors=[repr(e) for e in self.proxy.errors[errors_seen:]],
            )

    @contextlib.contextmanager
    def _armed(self, fault: str, path: str) -> Iterator[list[int]]:
        """Arm ``fault``; yields a list that holds the hit count afterwards (empty: refused)."""
        hits: list[int] = []
        if fault == "refused":
            with self.proxy.refusing():
                yield hits
            return
        with self.proxy.fault(path, fault) as injection:
            yield hits
        hits.append(injection.hits)


def _diff(before: list[tuple[str, str]], after: list[tuple[str, str]]) -> str:
    """Which records appeared, went or changed (hash prefixes and field names, no values)."""
    old, new = dict(before), dict(after)
    parts = [f"+{h[:12]} ({json.loads(new[h])['kind']})" for h in new.keys() - old.keys()]
    parts += [f"-{h[:12]} ({json.loads(old[h])['kind']})" for h in old.keys() - new.keys()]
    for h in old.keys() & new.keys():
        a, b = json.loads(old[h]), json.loads(new[h])
        changed = sorted(k for k in a if a[k] != b.get(k))
        if changed:
            parts.append(f"~{h[:12]} ({a['kind']}): {', '.join(changed)}")
    return "; ".join(parts)


def _path(url: str) -> str:
    return httpx.URL(url).path


def _setup_get(lab: Lab, issuer: Issuer, clock: FakeClock) -> Cell:
    access = AccessTokenManager(issuer)
    issuer.metadata()

    def recover() -> AccessToken:
        token = access.get(scopes=CC_SCOPES)
        assert token.scopes == frozenset(CC_SCOPES)
        return token

    return Cell(lambda: access.get(scopes=CC_SCOPES), recover)


def _user_token(lab: Lab, issuer: Issuer) -> tuple[AccessTokenManager, AccessToken]:
    """The subject's refresh token registered, and an access token refreshed with it."""
    issuer.metadata()
    RefreshTokenManager(issuer).register(
        lab.refresh_token, subject=SUBJECT, scopes=USER_SCOPES, auto_introspect=False
    )
    access = AccessTokenManager(issuer)
    return access, access.get(SUBJECT)


def _setup_refresh(lab: Lab, issuer: Issuer, clock: FakeClock, *, ahead: bool = False) -> Cell:
    access, token = _user_token(lab, issuer)
    now = clock.now
    if ahead:  # 200 s left of 3600: usable, but inside the last 10% (refresh ahead)
        aged = token.replace(issued_at=now - 3400, expires_at=now + 200)
    else:  # expired a second ago
        aged = token.replace(issued_at=now - 3600, expires_at=now - 1)
    issuer.store.put(aged)

    def recover() -> AccessToken:
        fresh = access.get(SUBJECT)
        assert fresh.token_hash != token.token_hash, "the next call did not refresh"
        assert fresh.expires_at is not None and fresh.expires_at > clock.now + 600
        return fresh

    return Cell(lambda: access.get(SUBJECT), recover, kept=aged if ahead else None)


def _setup_refresh_ahead(lab: Lab, issuer: Issuer, clock: FakeClock) -> Cell:
    return _setup_refresh(lab, issuer, clock, ahead=True)


def _setup_introspect(lab: Lab, issuer: Issuer, clock: FakeClock) -> Cell:
    access = AccessTokenManager(issuer)
    token = access.get(scopes=CC_SCOPES)

    def recover() -> object:
        result = access.introspect(token)
        assert result.active and result.client_id == CLIENT_ID
        return result

    return Cell(lambda: access.introspect(token), recover)


def _setup_revoke(lab: Lab, issuer: Issuer, clock: FakeClock) -> Cell:
    access = AccessTokenManager(issuer)
    token = access.get(scopes=CC_SCOPES)
    return Cell(lambda: access.revoke(token), lambda: access.revoke(token), watched=token)


def _setup_discovery(lab: Lab, issuer: Issuer, clock: FakeClock) -> Cell:
    def recover() -> object:
        clock.advance(DEFAULT_RETRY_AFTER_FAILURE)  # a failed fetch is not retried sooner
        metadata = issuer.metadata()
        assert metadata.endpoint("token_endpoint") == lab.server.token_endpoint
        return metadata

    return Cell(issuer.metadata, recover)


def _setup_userinfo(lab: Lab, issuer: Issuer, clock: FakeClock) -> Cell:
    access, _ = _user_token(lab, issuer)
    claims = ClaimsManager(issuer, access)

    def recover() -> dict[str, Any]:
        answer = claims.userinfo(SUBJECT)
        assert answer["sub"] == SUBJECT and answer["email"] == f"{SUBJECT}@example.test"
        return answer

    return Cell(lambda: claims.userinfo(SUBJECT), recover)


SETUPS: dict[str, Callable[[Lab, Issuer, FakeClock], Cell]] = {
    "get": _setup_get,
    "refresh": _setup_refresh,
    "refresh_ahead": _setup_refresh_ahead,
    "introspect": _setup_introspect,
    "revoke": _setup_revoke,
    "discovery": _setup_discovery,
    "userinfo": _setup_userinfo,
}


@contextlib.contextmanager
def open_lab(server: AuthServer) -> Iterator[Lab]:
    """The fault proxy in front of ``server`` and a refresh token of ``SUBJECT``."""
    tokens = obtain_refresh_token(server, CLIENT_ID, scopes=USER_SCOPES, user=SUBJECT)
    for name in ("access_token", "refresh_token", "id_token"):
        ISSUED.add(tokens[name])
    with FaultProxy(server.issuer, hold=3 * TIMEOUT + 1, on_upstream_body=_remember_tokens) as p:
        yield Lab(server, p, tokens["refresh_token"])
        assert not p.errors, f"the fault proxy itself failed: {p.errors!r}"


def problems(outcome: Outcome) -> list[str]:
    """What is wrong with one outcome (empty: the cell holds). Also checks that the fault
    really reached the operation, so a wrongly set-up cell cannot pass."""
    fault, operation, error = outcome.fault, outcome.operation, outcome.error
    found: list[str] = []
    if not outcome.typed:
        found.append(
            f"an untyped {type(error).__name__} escaped: {error}\n{outcome.describe_error()}"
        )
    if outcome.proxy_errors:
        found.append(f"the fault proxy itself failed: {outcome.proxy_errors}")
    if fault != "refused" and outcome.hits != 1:
        found.append(f"the fault was hit {outcome.hits} times, not once (cell set up wrongly)")
    if outcome.exchange is not None and outcome.exchange.mutated is False:
        found.append("the real answer has nothing to break: the cell should be n/a")
    tolerated = TOLERATED.get((fault, operation))
    if outcome.kind == "accepted" and not tolerated:
        found.append(f"{operation} accepted {fault} silently (result {outcome.result!r})")
    if outcome.kind != "accepted" and tolerated:
        found.append(f"documented as tolerated ({tolerated}), got {outcome.label}")
    if outcome.kind == "kept" and operation != "refresh_ahead":
        found.append("a kept token outside refresh ahead")
    if operation == "refresh_ahead" and outcome.kind not in ("kept", "accepted"):
        found.append(f"a failed refresh ahead must keep the valid token, got {outcome.label}")
    if outcome.kind != "accepted" and outcome.store_changed:
        found.append(f"the store changed: {outcome.store_diff}")
    if operation == "revoke" and not outcome.revocation_listed:
        found.append("revoke did not put the token on the local revocation list")
    if outcome.refresh_token_kept is False:
        found.append("the refresh token is gone from the store")
    if not outcome.recovered:
        found.append(f"the next call failed:\n{outcome.recovery_error}")
    if (
        fault,
        operation,
    ) in _DISCOVERY_FALLBACK and "/.well-known/oauth-authorization-server" not in outcome.paths:
        found.append(f"discovery succeeded without the RFC 8414 URL: {outcome.paths}")
    if outcome.kind == "accepted" and fault == "expires_in_numeric_string":
        expires_at = getattr(outcome.result, "expires_at", None)
        if expires_at is None or abs(expires_at - (outcome.now + 3600)) > 1:
            found.append(f'expires_in "3600" was not kept as 3600 s (expires_at {expires_at})')
    if fault in TRANSPORT_FAULTS and error is not None:
        if not isinstance(error, TransportError):
            found.append(f"not a TransportError: {outcome.label}: {error}")
        elif fault == "refused" and not error.reason.startswith("ConnectError"):
            found.append(f"refused, but the reason is {error.reason!r}")
        if fault == "read_timeout" and outcome.seconds > TIMEOUT + 1.0:
            found.append(f"the read timeout took {outcome.seconds:.2f} s")
        if fault == "read_timeout" and not (outcome.exchange and outcome.exchange.closed_early):
            found.append("the client did not give up before the held answer was sent")
    if fault in STATUS_FAULTS and error is not None:
        status = STATUS_FAULTS[fault]
        if not isinstance(error, ResponseError) or error.status_code != status:
            found.append(f"not a ResponseError with status {status}: {outcome.label}: {error}")
        elif fault in RETRY_AFTER and error.retry_after != RETRY_AFTER[fault]:
            found.append(
                f"retry_after is {error.retry_after!r}, the server sent {RETRY_AFTER[fault]!r}"
            )
    if fault in OVERSIZED_FAULTS and outcome.kind != "accepted":
        if outcome.kind != "kept" and (
            not isinstance(error, InvalidResponseError) or "larger than" not in str(error)
        ):
            found.append(f"not refused as too large: {outcome.label}: {error}")
        exchange = outcome.exchange
        # The bomb is 32 KiB on the wire, sent whole; the limit applies to the inflated bytes.
        if fault != "gzip_bomb" and (
            exchange is None or not exchange.closed_early or exchange.bytes_sent >= OVERSIZE_BYTES
        ):
            found.append("the client read the whole oversized body")
    return found


# --- the tests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(auth_server_no_rotation: AuthServer) -> Iterator[Lab]:
    """The fault proxy in front of the no-rotation server, and a refresh token of alice."""
    with open_lab(auth_server_no_rotation) as value:
        yield value


def _cell_param(fault: str, operation: str) -> Any:
    marks = []
    if (fault, operation) in KNOWN_DEFECTS:
        marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_DEFECTS[fault, operation]))
    return pytest.param(fault, operation, id=f"{fault}-{operation}", marks=marks)


@pytest.mark.parametrize(("fault", "operation"), [_cell_param(f, op) for f, op in CELLS])
def test_fault(lab: Lab, fault: str, operation: str) -> None:
    """One fault, one operation: typed error (or kept/tolerated), same store, next call works."""
    outcome = lab.run(fault, operation)
    found = problems(outcome)
    assert not found, "\n".join(found)


def test_matrix_is_complete() -> None:
    """Every (fault, operation) pair is run or explained, and no explanation names a run cell."""
    assert set(CELLS) | set(NOT_APPLICABLE) == {(f, op) for f in FAULTS for op in OPERATIONS}
    assert not set(TOLERATED) & set(NOT_APPLICABLE)
    assert not set(KNOWN_DEFECTS) & set(NOT_APPLICABLE)
    assert all(NOT_APPLICABLE.values()) and all(TOLERATED.values())
    assert set(OPERATIONS) == set(SETUPS)
