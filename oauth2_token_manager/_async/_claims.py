"""``AsyncClaimsManager``: a subject's ID token, userinfo and merged claims (OpenID Connect).

The original library's ``Claims`` module done right: ID tokens are validated before they are
stored, userinfo answers too (JSON or ``application/jwt``, signed and/or encrypted), the
userinfo ``sub`` must be the ID token's, and both are removed with the subject
(``delete_all``) and by ``expunge_expired`` after ``claims_retention``. The rules are in
``_oidc``; this module only does the I/O around them.
"""

from __future__ import annotations

from typing import Any, cast

import httpx

from .._arguments import check_subject, check_text
from .._deadline import bounded
from .._exceptions import TokenNotFoundError, UserinfoError
from .._json import JSONDocumentError, describe, loads_object
from .._models import GroupKey, IDToken, UserinfoRecord
from .._oidc import merge_claims, userinfo_format
from .._protocol import error_from_response
from ._http import read_bounded
from ._issuer import AsyncIssuer
from ._manager import AsyncAccessTokenManager, expunge_kind

__all__ = ["AsyncClaimsManager"]


class AsyncClaimsManager:
    """ID tokens, userinfo and claims of one issuer's subjects.

    Userinfo is called with a valid access token of the subject, obtained (or refreshed)
    through ``access`` (an access-token manager of the same issuer, made when not given).
    """

    def __init__(self, issuer: AsyncIssuer, access: AsyncAccessTokenManager | None = None) -> None:
        self.issuer = issuer
        self.access = access or AsyncAccessTokenManager(issuer)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.issuer!r})"

    def _userinfo_group(self, subject: str) -> GroupKey:
        return GroupKey("userinfo", self.issuer.url, self.issuer.client.client_id, subject, "")

    @bounded
    async def register_id_token(
        self, id_token: str, *, nonce: str | None = None, timeout: float | None = None
    ) -> IDToken:
        """Validate an ID token (signature, iss, aud/azp, exp, iat, nonce) and keep it as its
        subject's latest; ``IDTokenError`` and nothing stored when it is not valid."""
        check_text("id_token", id_token, optional=False)
        claims = await self.issuer.jwt.validate_id_token(id_token, nonce=nonce)
        return await self.issuer.id_tokens.keep(id_token, claims)

    @bounded
    async def get_id_token(self, subject: str, *, timeout: float | None = None) -> IDToken:
        """The subject's latest ID token, even expired (for ``id_token_hint`` at logout)."""
        check_subject(subject, optional=False)
        token = await self.issuer.id_tokens.latest(subject)
        if token is None:
            raise TokenNotFoundError(f"no ID token for subject {subject!r}")
        return token

    @bounded
    async def userinfo(self, subject: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Ask the userinfo endpoint now (with a valid access token of the subject), validate
        and keep the answer; return its claims."""
        check_subject(subject, optional=False)
        iss = self.issuer
        metadata = await iss.metadata()
        url = metadata.endpoint("userinfo_endpoint")
        token = await self.access.get(subject)
        request = httpx.Request(
            "GET",
            url,
            headers={
                "Authorization": f"Bearer {token.value}",
                "Accept": "application/json, application/jwt",
            },
        )
        raw = await read_bounded(iss.http, request, iss.options.max_response_bytes)
        if raw.status_code != 200:
            raise error_from_response(raw)
        body = raw.content.decode("utf-8", "replace")
        if userinfo_format(raw.headers.get("content-type")) == "json":
            try:  # the strict reader: duplicate keys (which "sub"?), NaN... are refused
                claims: dict[str, Any] = loads_object(raw.content)
            except JSONDocumentError as exc:
                raise UserinfoError(
                    f"userinfo from {raw.url} is {exc} "
                    f"({describe(raw.content, raw.content_type, raw.status_code)})"
                ) from None
        else:
            algorithms = (iss.client.userinfo_signed_response_alg or "RS256",)
            claims = await iss.jwt.validate_jwt(body.strip(), algorithms, UserinfoError)
            if "iss" in claims and claims["iss"] != metadata.issuer:
                raise UserinfoError("the signed userinfo names another issuer")
            aud = claims.get("aud")
            if aud is not None and iss.client.client_id not in (
                [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            ):
                raise UserinfoError("the signed userinfo is for another audience")
        id_token = await iss.id_tokens.latest(subject)
        expected = id_token.claims.get("sub") if id_token is not None else subject
        if claims.get("sub") != expected:
            raise UserinfoError(
                "the userinfo sub is not the ID token's (OpenID Connect Core §5.3.2)"
            )
        now = iss.options.clock()
        old = await iss.store.find(self._userinfo_group(subject), None)
        record = UserinfoRecord(
            value=body,
            issuer=iss.url,
            client_id=iss.client.client_id,
            subject=subject,
            expires_at=now + iss.options.claims_retention,
            issued_at=now,
            updated_at=now,
            token_type="userinfo",
            extra={"claims": claims},
        )
        await iss.store.put(record)
        for previous in old:
            if previous.token_hash != record.token_hash:
                await iss.store.delete(previous.token_hash)
        return dict(claims)

    @bounded
    async def get_claims(self, subject: str, *, timeout: float | None = None) -> dict[str, Any]:
        """The subject's claims: the latest ID token's (less protocol claims) merged with
        userinfo, which is asked again when older than ``min_userinfo_refresh_interval``."""
        check_subject(subject, optional=False)
        iss = self.issuer
        id_token = await iss.id_tokens.latest(subject)
        found = await iss.store.find(self._userinfo_group(subject), None)
        record = cast(UserinfoRecord, found[0]) if found else None
        now = iss.options.clock()
        if record is None or now - record.updated_at >= iss.options.min_userinfo_refresh_interval:
            userinfo = await self.userinfo(subject)
            fetched_at = iss.options.clock()
        else:
            userinfo, fetched_at = dict(record.claims), record.updated_at
        return merge_claims(
            id_token.claims if id_token is not None else None,
            id_token.issued_at if id_token is not None else float("-inf"),
            userinfo,
            fetched_at,
        )

    @bounded
    async def delete_all(self, subject: str, *, timeout: float | None = None) -> int:
        """Forget the subject's ID tokens and userinfo; return how many records went."""
        check_subject(subject, optional=False)
        removed = 0
        groups = (self.issuer.id_tokens.group(subject), self._userinfo_group(subject))
        for group in groups:
            for record in await self.issuer.store.find(group, None):
                if await self.issuer.store.delete(record.token_hash) is not None:
                    removed += 1
        return removed

    @bounded
    async def expunge_expired(self, *, timeout: float | None = None) -> int:
        """Remove this issuer's and client's ID tokens and userinfo records past their
        retention; return how many (other issuers' and clients' records stay)."""
        iss = self.issuer
        now = iss.options.clock()
        client_id = iss.client.client_id
        removed = await expunge_kind(iss.store, iss.url, client_id, "id", now)
        return removed + await expunge_kind(iss.store, iss.url, client_id, "userinfo", now)
