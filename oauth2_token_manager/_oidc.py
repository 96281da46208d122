"""OpenID Connect rules: ID tokens, userinfo and claims (OpenID Connect Core 1.0). Pure.

Rules stated once here:

ID token validation (Core §3.1.3.7):

- Compact JWS, or a compact JWE (five parts) that is decrypted with the client's
  ``decryption_keys`` first (Core §10.2); a JWE without configured keys is rejected.
- The signing algorithm must be one the client configuration allows
  (``id_token_signed_response_alg``, default RS256); ``none`` is never accepted. HS* tokens are
  verified with the client secret, others with the issuer's JWKS (by ``kid``).
- ``iss`` equals the issuer; ``aud`` contains the client id; with several audiences ``azp`` is
  required; when ``azp`` is present it equals the client id.
- ``exp`` is after ``now - leeway``; ``iat`` is not after ``now + leeway``; ``sub`` is a
  non-empty string; ``nonce`` equals the caller's when the caller gives one.
- A refreshed ID token keeps the previous one's ``iss``, ``sub`` and ``aud`` (Core §12.2).

Userinfo (Core §5.3): ``application/json`` (parameters tolerated) is a claims object;
``application/jwt`` (parameters tolerated) is a JWS signed by the issuer and/or a JWE for the
client, validated like an ID token's signature (and ``iss``/``aud`` when present). Its ``sub``
must equal the ID token's (§5.3.2).

JSON (userinfo bodies, JWT headers and payloads) is read by the strict reader of ``_json``: a
claim sent twice is ambiguous (which ``sub``?) and refused, like NaN and Infinity.

Merging (as the original library): the ID token's claims without the protocol claims
(iss, sub, aud, exp, iat, auth_time, nonce, acr, amr, azp), combined with the userinfo claims;
where both have a claim, the newer source wins (ID token ``iat`` against the userinfo fetch
time). ``sub`` is always the subject's.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

from ._exceptions import IDTokenError, UserinfoError
from ._json import JSONDocumentError, loads_object

__all__ = [
    "PROTOCOL_CLAIMS",
    "check_id_token_claims",
    "check_refreshed_id_token",
    "is_jwe",
    "merge_claims",
    "unverified_header",
    "userinfo_format",
]

PROTOCOL_CLAIMS = frozenset(
    {"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp"}
)


def is_jwe(value: str) -> bool:
    """A compact JWE has five parts, a compact JWS three."""
    parts = value.count(".") + 1
    if parts not in (3, 5):
        raise IDTokenError(f"not a compact JWT ({parts} parts)")
    return parts == 5


def unverified_header(value: str) -> dict[str, Any]:
    """The (not yet verified) JOSE header, to pick algorithm and key."""
    head = value.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
    except (ValueError, binascii.Error):
        raise IDTokenError("the JWT header is not base64url JSON") from None
    try:
        return loads_object(decoded)
    except JSONDocumentError as exc:  # the strict reader: a header member twice is ambiguous
        raise IDTokenError(f"the JWT header is {exc}") from None


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
        return list(aud)
    raise IDTokenError("aud is missing or not a string or list of strings")


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise IDTokenError(f"{name} is missing or not a number")
    return float(value)


def check_id_token_claims(
    claims: Mapping[str, Any],
    *,
    issuer: str,
    client_id: str,
    now: float,
    leeway: float,
    nonce: str | None = None,
) -> None:
    """Raise ``IDTokenError`` naming the first rule the claims break (Core §3.1.3.7)."""
    if claims.get("iss") != issuer:
        raise IDTokenError(f"iss {str(claims.get('iss'))[:80]!r} is not the issuer {issuer!r}")
    audiences = _audiences(claims)
    if client_id not in audiences:
        raise IDTokenError(f"aud does not contain the client id {client_id!r}")
    azp = claims.get("azp")
    if len(audiences) > 1 and azp is None:
        raise IDTokenError("several audiences and no azp")
    if azp is not None and azp != client_id:
        raise IDTokenError(f"azp is not the client id {client_id!r}")
    if _number(claims, "exp") <= now - leeway:
        raise IDTokenError("the ID token has expired")
    if _number(claims, "iat") > now + leeway:
        raise IDTokenError("the ID token is issued in the future (iat)")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise IDTokenError("sub is missing or empty")
    if nonce is not None and claims.get("nonce") != nonce:
        raise IDTokenError("nonce does not match the one sent")


def check_refreshed_id_token(previous: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """A refreshed ID token names the same issuer, subject and audience (Core §12.2)."""
    for name in ("iss", "sub"):
        if previous.get(name) != new.get(name):
            raise IDTokenError(f"the refreshed ID token has another {name} than the previous one")
    if sorted(_audiences(previous)) != sorted(_audiences(new)):
        raise IDTokenError("the refreshed ID token has another aud than the previous one")


def userinfo_format(content_type: str | None) -> str:
    """``"json"`` or ``"jwt"`` from a userinfo Content-Type (parameters ignored)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return "json"
    if media == "application/jwt":
        return "jwt"
    raise UserinfoError(f"userinfo answered with an unexpected content type {media[:60]!r}")


def merge_claims(
    id_claims: Mapping[str, Any] | None,
    id_issued_at: float,
    userinfo: Mapping[str, Any] | None,
    userinfo_at: float,
) -> dict[str, Any]:
    """The subject's claims: ID token (less protocol claims) and userinfo, newer wins."""
    from_id = {k: v for k, v in (id_claims or {}).items() if k not in PROTOCOL_CLAIMS}
    from_userinfo = dict(userinfo or {})
    layers: Iterable[Mapping[str, Any]] = (
        (from_id, from_userinfo) if userinfo_at >= id_issued_at else (from_userinfo, from_id)
    )
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    sub = (id_claims or {}).get("sub") or from_userinfo.get("sub")
    if sub is not None:
        merged["sub"] = sub
    return merged
