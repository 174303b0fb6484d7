"""The composition root: settings in, a ready `MCPServer` out.

The lifespan opens the process's one HTTP client and the environments; with no environment configured it
starts the embedded sandbox on loopback and serves against it, saying so on stderr.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
from mcp.server.mcpserver import MCPServer

from dataverse import ConnectionSettings, DataverseClient, StaticTokenProvider, TokenProvider, build_http_client
from tools import AppState, Environment, Policy, build_tools, choose_environment

from ._settings import ConfigurationError, ServerSettings
from ._version import __version__

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Work with Microsoft Dataverse (Dynamics 365) data. Find tables with list_tables, learn columns with "
    "describe_table, then query_records or get_record; writes take values keyed by column logical name. "
    "`table` accepts a logical name (account), entity set (accounts) or display name (Account). "
    "`environment` is a name or URL from list_environments, needed only when there are several."
)


@dataclass
class StaticEnvironments:
    """A fixed set of environments, all reached as one identity (stdio, or a shared app identity)."""

    environments: list[Environment]
    identity: str
    default: str | None = None

    async def all(self) -> list[Environment]:
        return list(self.environments)

    async def open(self, name: str | None) -> Environment:
        return choose_environment(self.environments, name, self.default)

    @property
    def caller(self) -> str:
        return self.identity


def user_agent() -> str:
    return f"dynamics-mcp/{__version__}"


def _client(
    http: httpx2.AsyncClient, settings: ServerSettings, url: str, version: str, tokens: TokenProvider
) -> DataverseClient:
    return DataverseClient(
        http,
        url,
        tokens,
        api_version=version,
        max_concurrency=settings.max_concurrency,
        user_agent=user_agent(),
    )


async def open_environments(
    settings: ServerSettings, http: httpx2.AsyncClient, stack: AsyncExitStack
) -> StaticEnvironments:
    configured = settings.configured_environments()
    if not configured:
        return await _sandbox_environments(settings, http, stack)
    mode = settings.auth_mode()
    if mode != "token":
        # MSAL's providers pull in cryptography and pyjwt: a ready token, the common stdio case, needs neither.
        from ._credentials import build_credential, scope_for

        credential = build_credential(settings)
        stack.callback(credential.close)
        environments = [
            Environment(
                environment.display_name(),
                environment.url,
                environment.name,
                _client(
                    http,
                    settings,
                    environment.url,
                    environment.api_version,
                    credential.for_scope(scope_for(mode, environment.url)),
                ),
            )
            for environment in configured
        ]
        return StaticEnvironments(environments, identity=mode, default=settings.default_environment)
    environments = []
    for environment in configured:
        token = environment.access_token or settings.access_token
        if token is None:
            raise ConfigurationError(
                f"No credentials for {environment.url}: set DATAVERSE_ACCESS_TOKEN=<bearer token>, "
                "or access_token in the environment's [[environments]] entry."
            )
        tokens = StaticTokenProvider(token.get_secret_value())
        client = _client(http, settings, environment.url, environment.api_version, tokens)
        environments.append(Environment(environment.display_name(), environment.url, environment.name, client))
    return StaticEnvironments(environments, identity="token", default=settings.default_environment)


async def _sandbox_environments(
    settings: ServerSettings, http: httpx2.AsyncClient, stack: AsyncExitStack
) -> StaticEnvironments:
    from sandbox import Sandbox  # only the zero-setup default needs it

    data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dynamics-mcp-sandbox-")))
    sandbox = await stack.enter_async_context(Sandbox(data))
    logger.warning(
        "No Dataverse environment is configured (DATAVERSE_URL): serving the embedded sandbox with demo data "
        "as user '%s', at %s",
        settings.sandbox_user,
        ", ".join(environment.url for environment in sandbox.environments.values()),
    )
    environments = [
        Environment(
            name,
            environment.url,
            environment.spec.friendly_name,
            _client(
                http,
                settings,
                environment.url,
                "v9.2",
                StaticTokenProvider(sandbox.token(settings.sandbox_user, name, lifetime=86400 * 30)),
            ),
        )
        for name, environment in sandbox.environments.items()
    ]
    return StaticEnvironments(
        environments, identity=f"sandbox:{settings.sandbox_user}", default=settings.default_environment or "contoso"
    )


def build_server(settings: ServerSettings) -> MCPServer[AppState]:
    """The MCP server for these settings; its lifespan owns the HTTP client and the environments."""
    policy = Policy(
        read_only=settings.read_only, allowed_tables=settings.allowed_tables, denied_tables=settings.denied_tables
    )

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        connection = ConnectionSettings(connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout)
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(build_http_client(connection))
            environments = await open_environments(settings, http, stack)
            yield AppState(environments=environments, policy=policy)

    return MCPServer[AppState](
        "dynamics-mcp",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level="WARNING",
        tools=build_tools(policy),
    )
