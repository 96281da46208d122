"""Events: what happened to tokens, for users who log or meter it.

An ``Issuer`` option ``on_event`` takes a callable receiving each ``TokenEvent``; it is called
inline, after the store was updated. An exception it raises is logged (logger
``oauth2_token_manager``) and does not change the outcome of the operation. Events carry the
token's hash, never its value.

Kinds: ``obtained`` (client-credentials grant), ``refreshed`` (an access token from a refresh
token), ``rotated`` (a new refresh token replaced the old one), ``removed`` (a token dropped
after ``invalid_grant``, removed by ``delete``/``delete_all``, or marked unusable by
``invalidate``, e.g. after a 401), ``revoked`` (``revoke``, or ``delete`` with
``revoke_on_delete``, once the server accepted it: one for the token and one for each access
token of a revoked refresh token's grant), ``failed`` (a token request failed; ``error`` says
why), ``registered`` (``register`` stored a token obtained elsewhere). ``expunge_expired``
emits none.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Literal

from ._exceptions import OAuth2TokenManagerError

__all__ = ["EventKind", "TokenEvent", "emit"]

logger = logging.getLogger("oauth2_token_manager")

EventKind = Literal[
    "obtained", "refreshed", "rotated", "removed", "revoked", "failed", "registered"
]


@dataclasses.dataclass(frozen=True, slots=True)
class TokenEvent:
    """One thing that happened to a token of an issuer."""

    kind: EventKind
    issuer: str
    client_id: str
    subject: str | None
    scopes: frozenset[str] | None
    token_hash: str | None = None
    """SHA-256 of the token concerned (the new one for ``rotated``)."""
    previous_hash: str | None = None
    """For ``rotated``: the hash of the refresh token that was replaced."""
    error: OAuth2TokenManagerError | None = None
    at: float = 0.0


def emit(callback: Callable[[TokenEvent], None] | None, event: TokenEvent) -> None:
    """Hand ``event`` to the user's callback; its failure is logged, never raised."""
    if callback is None:
        return
    try:
        callback(event)
    except Exception:
        logger.warning("on_event callback failed for a %s event", event.kind, exc_info=True)
