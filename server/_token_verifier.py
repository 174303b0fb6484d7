"""Validating the bearer tokens that callers of the HTTP transport present (Entra ID access tokens).

Signature from the authority's published keys (fetched again when a token names a key not seen yet, so key
rotation needs no restart), issuer, audience, expiry and not-before with a small clock skew, an allowed
tenant, and a delegated (user) token: only a user's token can be exchanged on-behalf-of. A token that fails
any check is refused with 401 before any tool runs; the reason is logged, the token never is.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import httpx2
import jwt
from mcp.server.auth.provider import AccessToken

logger = logging.getLogger(__name__)

CLOCK_SKEW: Final = 60  # seconds of clock difference tolerated on exp and nbf
KEY_REFRESH_INTERVAL: Final = 30.0  # unknown key ids fetch the keys again at most this often
_KEPT_CLAIMS: Final = ("iss", "tid", "oid", "upn", "preferred_username")


@dataclass
class _Keys:
    by_id: dict[str, Any] = field(default_factory=dict)
    missed_at: float = float("-inf")  # when an unknown key id last made us fetch the keys again


class EntraTokenVerifier:
    """The MCP SDK's `TokenVerifier` for Entra ID (or any OpenID provider publishing JWKS) access tokens."""

    def __init__(
        self,
        http: httpx2.AsyncClient,
        authority: str,
        audiences: list[str],
        tenants: frozenset[str] | None,
        *,
        key_refresh_interval: float = KEY_REFRESH_INTERVAL,
    ) -> None:
        self.http = http
        self.authority = authority.rstrip("/")
        self.audiences = audiences
        self.tenants = tenants
        self.key_refresh_interval = key_refresh_interval
        self._configuration: dict[str, Any] | None = None
        self._keys = _Keys()
        self._lock = anyio.Lock()

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            claims = await self._claims(token)
        except (jwt.PyJWTError, _Rejected) as error:
            logger.warning("Refused a bearer token: %s", error)
            return None
        except httpx2.HTTPError as error:
            logger.error("Cannot read the authority's signing keys (%s): refusing tokens", type(error).__name__)
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("azp") or claims.get("appid") or ""),
            scopes=str(claims.get("scp") or "").split(),
            expires_at=int(claims["exp"]),
            resource=str(claims["aud"]),
            subject=f"{claims['tid']}/{claims['oid']}",
            claims={
                name: claims[name] for name in ("iss", "tid", "oid", "upn", "preferred_username") if name in claims
            },
        )

    async def _claims(self, token: str) -> dict[str, Any]:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "RS256":
            raise _Rejected(f"algorithm {header.get('alg')!r} is not RS256")
        key = await self._key(str(header.get("kid") or ""))
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=self.audiences,
            leeway=CLOCK_SKEW,
            options={"require": ["exp", "iss", "aud", "tid", "oid"], "verify_iss": False},
        )
        tenant = str(claims["tid"])
        if self.tenants is not None and tenant.lower() not in self.tenants:
            raise _Rejected(f"tenant {tenant} is not allowed")
        configuration = await self._openid_configuration()
        issuer = str(configuration["issuer"]).replace("{tenantid}", tenant)
        if claims["iss"] != issuer:
            raise _Rejected(f"issuer {claims['iss']!r} is not {issuer!r}")
        if not claims.get("scp"):
            raise _Rejected("not a user's delegated token (no scp claim)")
        return claims

    async def _openid_configuration(self) -> dict[str, Any]:
        if self._configuration is None:
            response = await self.http.get(f"{self.authority}/v2.0/.well-known/openid-configuration")
            response.raise_for_status()
            self._configuration = dict(response.json())
        return self._configuration

    async def _key(self, key_id: str) -> Any:
        key = self._keys.by_id.get(key_id)
        if key is not None:
            return key
        async with self._lock:
            now = time.monotonic()
            if not self._keys.by_id:
                self._keys = await self._fetch_keys()
            elif key_id not in self._keys.by_id and now - self._keys.missed_at >= self.key_refresh_interval:
                self._keys = await self._fetch_keys()
                self._keys.missed_at = now
        key = self._keys.by_id.get(key_id)
        if key is None:
            raise _Rejected(f"signing key {key_id!r} is not published by the authority")
        return key

    async def _fetch_keys(self) -> _Keys:
        configuration = await self._openid_configuration()
        response = await self.http.get(str(configuration["jwks_uri"]))
        response.raise_for_status()
        keys = _Keys()
        for entry in response.json().get("keys") or []:
            if entry.get("kid") and entry.get("kty") == "RSA":
                keys.by_id[str(entry["kid"])] = jwt.PyJWK.from_dict(entry, algorithm="RS256").key
        return keys


class _Rejected(Exception):
    """The token is well-formed but not acceptable here."""
