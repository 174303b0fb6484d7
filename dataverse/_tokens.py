"""The seam between the client and authentication: an async source of bearer tokens.

`auth/` implements providers on MSAL; the client only asks for a token, and for a fresh one after a 401.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and when it stops being valid (seconds since the epoch)."""

    token: str
    expires_on: float

    def __repr__(self) -> str:
        return f"AccessToken(token=<redacted>, expires_on={self.expires_on})"

    def is_expired(self, *, margin: float = 0.0) -> bool:
        return time.time() + margin >= self.expires_on


class TokenProvider(Protocol):
    async def token(self, *, force_refresh: bool = False) -> AccessToken:
        """A bearer token for one caller and environment; safe to await concurrently."""
        ...


class StaticTokenProvider:
    """A ready token (DATAVERSE_ACCESS_TOKEN): it cannot be refreshed, so a 401 is final."""

    def __init__(self, token: str, expires_on: float | None = None) -> None:
        if not token.strip():
            raise ValueError("the access token is empty")
        self._token = AccessToken(token.strip(), expires_on or float("inf"))

    async def token(self, *, force_refresh: bool = False) -> AccessToken:
        return self._token
