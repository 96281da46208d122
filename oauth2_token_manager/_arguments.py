"""The checks of the arguments of public operations: pure, no I/O, run before anything else.

Rules stated once here:

- A subject is ``None`` (the client itself: client credentials) or a non-empty ``str``. ``""``
  is refused: it would silently name the client-credentials group.
- A token is a ``Token`` or its value, a non-empty ``str``.
- A number (an expiry, a lifetime, a duration option) is an ``int`` or a ``float``, not a
  ``bool``, and finite once converted to ``float``: ``NaN``, ``±inf`` and integers beyond the
  float range are refused. They would be written into a store (``Infinity`` is not JSON) or
  compare false with everything (a ``NaN`` lease never expires).
- ``register``'s ``expires_in`` is not negative, and is not given together with
  ``expires_at`` (which one would win is a guess).
- ``extra`` metadata is a mapping that is storable as JSON (finite numbers only).
- Scopes follow ``_scopes`` (RFC 6749 §3.3).

A bad argument raises ``InvalidArgumentError`` (a ``ValueError``); a bad option of an issuer,
client or store ``ConfigurationError`` (``option`` below). Messages name the argument and the
type of the value, never the value: it may be a token.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from ._exceptions import ConfigurationError, InvalidArgumentError
from ._models import Token
from ._scopes import normalize

__all__ = [
    "check_count",
    "check_extra",
    "check_list",
    "check_lookup",
    "check_registration",
    "check_subject",
    "check_text",
    "check_token",
    "check_update",
    "finite",
    "is_finite_number",
    "option",
]

_MATCHES = (None, "exact", "superset")
_STATUSES = ("valid", "expired", "all")


def _type(value: object) -> str:
    return type(value).__name__


def is_finite_number(value: object) -> bool:
    """Whether ``value`` is an ``int`` or ``float`` (not a ``bool``) that is a finite float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False


def finite(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    error: type[InvalidArgumentError] | type[ConfigurationError] = InvalidArgumentError,
) -> float:
    """``value`` as a finite ``float`` not below ``minimum``; else ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"{name} must be a number, not {_type(value)}")
    if not is_finite_number(value):
        raise error(f"{name} must be a finite number")
    number = float(value)
    if minimum is not None and number < minimum:
        raise error(f"{name} must be >= {minimum:g}")
    return number


def option(name: str, value: object, *, minimum: float | None = 0.0) -> float:
    """A numeric option of an issuer, client or store: finite (and >= 0 unless told)."""
    return finite(name, value, minimum=minimum, error=ConfigurationError)


def check_count(name: str, value: object, *, minimum: int = 0, optional: bool = False) -> None:
    """An ``int`` (not a ``bool``) of at least ``minimum`` (``None`` too when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be an integer, not {_type(value)}")
    if value < minimum:
        raise InvalidArgumentError(f"{name} must be >= {minimum}")


def check_text(name: str, value: object, *, optional: bool = True) -> None:
    """A non-empty ``str`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be a string, not {_type(value)}")
    if not value:
        raise InvalidArgumentError(f"{name} must not be empty")


def check_subject(subject: object, *, optional: bool = True) -> None:
    """A subject: a non-empty ``str``, or ``None`` (the client) when ``optional``."""
    if subject is None and optional:
        return
    if type(subject) is not str or not subject:
        if isinstance(subject, str):
            raise InvalidArgumentError(
                "subject must not be empty (None means the client itself)"
                if optional
                else "subject must not be empty"
            )
        raise InvalidArgumentError(f"subject must be a string, not {_type(subject)}")


def check_token(token: object) -> None:
    """A ``Token`` or a token value (a non-empty ``str``)."""
    if not isinstance(token, Token):
        check_text("a token value", token, optional=False)


def check_extra(extra: object) -> None:
    """``None`` or a mapping storable as JSON (string keys, finite numbers)."""
    if extra is None:
        return
    if not isinstance(extra, Mapping):
        raise InvalidArgumentError(f"extra must be a mapping, not {_type(extra)}")
    try:
        json.dumps(dict(extra), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise InvalidArgumentError("extra must be storable as JSON (finite numbers)") from None


def _scopes(scopes: Iterable[str] | None) -> frozenset[str] | None:
    return None if scopes is None else normalize(scopes)[0]


def check_lookup(subject: object, resource: object, match: object) -> None:
    """The arguments of an access token ``get`` but its scopes (``normalize`` checks them).

    ``get`` calls it when ``match`` is given and for a (subject, resource) it has not cached
    yet, so that a cached lookup pays nothing for it."""
    check_subject(subject)
    check_text("resource", resource)
    if match not in _MATCHES:
        raise InvalidArgumentError("match must be 'exact' or 'superset'")


def check_registration(
    value: object,
    *,
    subject: object,
    scopes: Iterable[str] | None,
    expires_at: object,
    expires_in: object,
    token_type: object,
    resource: object,
    extra: object,
    now: float,
) -> tuple[frozenset[str] | None, float | None]:
    """The arguments of ``register``, checked; returns (scopes, expires_at) as stored."""
    check_text("a token value", value, optional=False)
    check_subject(subject)
    scope_set = _scopes(scopes)
    check_text("token_type", token_type, optional=False)
    check_text("resource", resource)
    check_extra(extra)
    if expires_in is not None and expires_at is not None:
        raise InvalidArgumentError("give expires_in or expires_at, not both")
    if expires_in is not None:
        expires_at = now + finite("expires_in", expires_in, minimum=0)
    if expires_at is None:
        return scope_set, None
    return scope_set, finite("expires_at", expires_at)


def check_update(scopes: Any, expires_at: Any, extra: object, unset: Any) -> None:
    """The arguments of ``update`` but the token (``_resolve`` checks it; ``unset`` marks an
    argument not given)."""
    if scopes is not unset and scopes is not None:
        normalize(scopes)
    if expires_at is not unset and expires_at is not None:
        finite("expires_at", expires_at)
    check_extra(extra)


def check_list(
    subject: object, client_id: object, status: object, offset: object, limit: object, any_: object
) -> None:
    """The arguments of ``list`` (``any_`` is ``ANY``, accepted for subject and client_id)."""
    if subject is not any_:
        check_subject(subject)
    if client_id is not any_:
        check_text("client_id", client_id)
    if status not in _STATUSES:
        raise InvalidArgumentError("status must be 'valid', 'expired' or 'all'")
    check_count("offset", offset)
    check_count("limit", limit, optional=True)
