"""JOSE on joserfc (authlib's JOSE library): verify a JWS, decrypt a JWE, read a JWK Set.

Pure: keys come from the caller. Payloads are read by the strict JSON reader (``_json``: no
duplicate claims, no NaN...). Every joserfc failure becomes the caller's typed error
(``IDTokenError`` by default) with joserfc's error code, never the token or key material.
``UnknownKeyError`` says that no key matches the token's ``kid`` (the JWKS may have rotated).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

from joserfc import jwe, jws
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet, OctKey

from ._exceptions import IDTokenError, OAuth2TokenManagerError
from ._json import JSONDocumentError, loads_object

__all__ = ["JWE_ALGORITHMS", "UnknownKeyError", "decrypt", "key_set", "secret_key", "verify"]

JWE_ALGORITHMS = (
    # key management (RSA1_5 is left out: padding-oracle prone)
    "RSA-OAEP",
    "RSA-OAEP-256",
    "ECDH-ES",
    "ECDH-ES+A128KW",
    "ECDH-ES+A256KW",
    "A128KW",
    "A256KW",
    "dir",
    # content encryption
    "A128GCM",
    "A256GCM",
    "A128CBC-HS256",
    "A256CBC-HS512",
)
"""The JWE algorithms accepted for ID tokens and userinfo encrypted to this client."""

logger = logging.getLogger("oauth2_token_manager")


class UnknownKeyError(IDTokenError):
    """No key of the JWK Set has the token's ``kid``."""


def key_set(document: Any) -> KeySet:
    """A JWK Set from a JSON document; keys that cannot be imported are skipped (logged)."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise IDTokenError("the JWK Set is not an object with a keys list")
    keys = []
    for raw in document["keys"]:
        try:
            keys.append(KeySet.import_key_set({"keys": [raw]}).keys[0])
        except (JoseError, ValueError, TypeError, KeyError):
            logger.info("skipped a JWK that cannot be imported (kid %r)", _kid(raw))
    return KeySet(keys)


def _kid(raw: Any) -> str | None:
    return raw.get("kid") if isinstance(raw, Mapping) else None


def secret_key(secret: str) -> KeySet:
    """The client secret as the key of HS* signatures."""
    return KeySet([OctKey.import_key(secret.encode())])


def verify(
    value: str,
    keys: KeySet,
    algorithms: Collection[str],
    error: type[OAuth2TokenManagerError] = IDTokenError,
) -> dict[str, Any]:
    """The claims of a compact JWS whose signature one of ``keys`` verifies."""
    if any(a.lower() == "none" for a in algorithms):
        raise error("the 'none' algorithm is never accepted")
    try:
        result = jws.deserialize_compact(value, keys, algorithms=list(algorithms))
    except InvalidKeyIdError:
        raise UnknownKeyError("no key of the issuer's JWK Set has the token's kid") from None
    except JoseError as exc:
        raise error(f"signature check failed ({exc.error})") from None
    except (ValueError, TypeError):
        raise error("the JWS cannot be parsed") from None
    try:
        return loads_object(result.payload)
    except JSONDocumentError as exc:  # the strict reader: a claim twice is ambiguous
        raise error(f"the JWS payload is {exc}") from None


def decrypt(
    value: str, keys: KeySet | None, error: type[OAuth2TokenManagerError] = IDTokenError
) -> str:
    """The plaintext (a nested JWS or JSON) of a compact JWE for this client."""
    if keys is None:
        raise error("an encrypted JWT arrived but the client has no decryption_keys")
    try:
        result = jwe.decrypt_compact(value, keys, algorithms=list(JWE_ALGORITHMS))
    except JoseError as exc:
        raise error(f"decryption failed ({exc.error})") from None
    except (ValueError, TypeError):
        raise error("the JWE cannot be parsed") from None
    try:
        return bytes(result.plaintext or b"").decode()
    except UnicodeDecodeError:
        raise error("the JWE plaintext is not text") from None
