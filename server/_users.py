"""The environments of a signed-in user: each user reaches Dataverse as themselves.

Over HTTP the caller is the one the MCP SDK's bearer middleware authenticated for the current request; their
token is exchanged on-behalf-of for Dataverse tokens and never sent to Dataverse itself. Each user has their
own clients (so their own metadata caches and concurrency cap) and tokens, kept for the most recently active
users only: nothing of one user's is reachable from another's requests. On stdio the one signed-in user of a
delegated mode is the only caller.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import httpx2
from mcp.server.auth.middleware.auth_context import get_access_token

from dataverse import DataverseClient, SingleFlight, TokenProvider, discovery_scope, list_instances
from tools import Environment, choose_environment

from ._settings import EnvironmentSettings

if TYPE_CHECKING:
    from auth import Credential  # MSAL and cryptography load only when a mode signs in

DISCOVERY_TTL: Final = 300.0  # seconds a user's discovered environment list is reused


@dataclass(frozen=True)
class Caller:
    key: str  # tenant/object id: stable, unique per user
    name: str  # what the audit log shows
    token: str


@dataclass
class _UserSession:
    credential: Credential
    clients: dict[str, DataverseClient] = field(default_factory=dict)
    discovered: list[Environment] | None = None
    discovered_at: float = 0.0
    discovery: SingleFlight[list[Environment]] = field(default_factory=SingleFlight)  # one request per user


def current_caller() -> Caller:
    """The authenticated caller of the request being served (the transport refuses requests without one)."""
    access = get_access_token()
    if access is None or not access.subject:
        raise PermissionError("This request carries no signed-in user.")
    claims = access.claims or {}
    name = str(claims.get("upn") or claims.get("preferred_username") or access.subject)
    return Caller(access.subject, name, access.token)


class UserEnvironments:
    """`tools.Environments` for the current caller: the configured environments, or theirs from Global Discovery."""

    def __init__(
        self,
        credential_of: Callable[[Caller], Credential],
        http: httpx2.AsyncClient,
        make_client: Callable[[str, str, TokenProvider], DataverseClient],
        configured: list[EnvironmentSettings],
        discovery_url: str,
        *,
        default: str | None = None,
        max_users: int = 1000,
        caller: Callable[[], Caller] = current_caller,
    ) -> None:
        self.credential_of = credential_of
        self.http = http
        self.make_client = make_client
        self.configured = configured
        self.discovery_url = discovery_url
        self.default = default
        self.max_users = max_users
        self._caller = caller
        self._sessions: OrderedDict[str, _UserSession] = OrderedDict()

    def _session(self) -> tuple[Caller, _UserSession]:
        caller = self._caller()
        credential = self.credential_of(caller)
        session = self._sessions.get(caller.key)
        if session is None or session.credential is not credential:
            session = self._sessions[caller.key] = _UserSession(credential)
            while len(self._sessions) > self.max_users:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(caller.key)
        return caller, session

    def _environment(
        self, session: _UserSession, name: str, url: str, friendly: str | None, version: str
    ) -> Environment:
        client = session.clients.get(url)
        if client is None:
            tokens = session.credential.for_scope(f"{url.rstrip('/')}/user_impersonation")
            client = session.clients[url] = self.make_client(url, version, tokens)
        return Environment(name, url, friendly, client)

    async def all(self) -> list[Environment]:
        _, session = self._session()
        if self.configured:
            return [self._environment(session, e.display_name(), e.url, e.name, e.api_version) for e in self.configured]
        if session.discovered is None or time.monotonic() - session.discovered_at > DISCOVERY_TTL:

            async def discover() -> list[Environment]:
                tokens = session.credential.for_scope(discovery_scope(self.discovery_url))
                instances = await list_instances(self.http, self.discovery_url, tokens)
                session.discovered = [
                    self._environment(session, i.url_name or i.unique_name, i.url, i.friendly_name, "v9.2")
                    for i in instances
                ]
                session.discovered_at = time.monotonic()
                return session.discovered

            return list(await session.discovery.run("instances", discover))
        return list(session.discovered)

    async def open(self, name: str | None) -> Environment:
        return choose_environment(await self.all(), name, self.default)

    @property
    def caller(self) -> str:
        return self._caller().name

    @property
    def caller_id(self) -> str:
        return self._caller().key
