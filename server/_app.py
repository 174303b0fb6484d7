"""The composition root: settings in, a ready `MCPServer` out.

The lifespan opens the process's one HTTP client and the environments; with no environment configured it
starts the embedded sandbox on loopback in the background and serves against it, saying so on stderr.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import httpx2
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from pydantic import AnyHttpUrl

from dataverse import (
    DEFAULT_DISCOVERY_URL,
    DISCOVERY_BY_AUTHORITY,
    DataverseClient,
    DataverseError,
    RetryPolicy,
    StaticTokenProvider,
    TokenProvider,
    build_http_client,
)
from tools import (
    AppState,
    Cursors,
    Environment,
    Environments,
    Policy,
    PolicyError,
    build_tools,
    choose_environment,
)

from ._data_directory import data_home, embedded_sandbox_dir
from ._embedded_sandbox import SandboxEnvironments, running_in_background
from ._kept_key import kept_key
from ._settings import ConfigurationError, ServerSettings
from ._users import Caller, UserEnvironments
from ._version import __version__

if TYPE_CHECKING:
    from ._token_verifier import EntraTokenVerifier

Connect = Callable[[str, str, TokenProvider], DataverseClient]  # (url, API version, tokens) -> a client
DELEGATED: Final = frozenset({"device-code", "interactive", "password"})

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Work with Microsoft Dataverse (Dynamics 365) data. Find tables with list_tables, learn columns with "
    "describe_table, then query_records or get_record; writes take values keyed by column logical name. "
    "`table` accepts a logical name (account), entity set (accounts) or display name (Account). "
    "`environment` is a name or URL from list_environments, needed only when there are several."
)
# A sentence more for a toolset offered: when to reach for its tools rather than query_records.
TOOLSET_INSTRUCTIONS: Final = {
    "search": "To find rows by words across tables (a name, an email, a phone number), use search_records.",
    "changes": "To follow what changed in a table since an earlier look, use list_changes and keep its token.",
}


def instructions(policy: Policy) -> str:
    """The server's instructions, naming the tools of the toolsets it offers only."""
    offered = [text for name, text in TOOLSET_INSTRUCTIONS.items() if not policy.toolsets or name in policy.toolsets]
    return " ".join([INSTRUCTIONS, *offered])


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

    @property
    def caller_id(self) -> str:
        return self.identity


def user_agent() -> str:
    return f"dynamics-mcp/{__version__}"


def _connector(http: httpx2.AsyncClient, settings: ServerSettings, retry: RetryPolicy | None) -> Connect:
    """How this server reaches an environment: the process's HTTP client, its limits, one caller's tokens.

    In read-only mode the clients themselves refuse to send writes, whatever tool or path reaches them.
    """

    def connect(url: str, version: str, tokens: TokenProvider) -> DataverseClient:
        return DataverseClient(
            http,
            url,
            tokens,
            api_version=version,
            retry=retry,
            max_concurrency=settings.max_concurrency,
            user_agent=user_agent(),
            read_only=settings.read_only,
        )

    return connect


async def open_environments(
    settings: ServerSettings, http: httpx2.AsyncClient, stack: AsyncExitStack, retry: RetryPolicy | None = None
) -> Environments:
    configured = settings.configured_environments()
    mode = settings.auth_mode()
    connect = _connector(http, settings, retry)
    if not configured and (settings.auth in DELEGATED or mode == "password"):
        return _discovered_environments(settings, http, stack, connect)
    if not configured:
        return await _sandbox_environments(settings, stack, connect)
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
                connect(
                    environment.url, environment.api_version, credential.for_scope(scope_for(mode, environment.url))
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
        client = connect(environment.url, environment.api_version, tokens)
        environments.append(Environment(environment.display_name(), environment.url, environment.name, client))
    return StaticEnvironments(environments, identity="token", default=settings.default_environment)


def _discovered_environments(
    settings: ServerSettings, http: httpx2.AsyncClient, stack: AsyncExitStack, connect: Connect
) -> Environments:
    """A signed-in user with no environment configured: theirs, from Global Discovery."""
    from ._credentials import build_credential

    credential = build_credential(settings)
    stack.callback(credential.close)
    me = Caller("signed-in user", settings.username or "signed-in user", "")
    return UserEnvironments(
        lambda _: credential,
        http,
        connect,
        [],
        discovery_url(settings),
        default=settings.default_environment,
        caller=lambda: me,
    )


async def _sandbox_environments(
    settings: ServerSettings, stack: AsyncExitStack, connect: Connect
) -> SandboxEnvironments:
    """The embedded sandbox, starting in the background with the data it kept from earlier runs."""
    sandbox = await stack.enter_async_context(running_in_background(embedded_sandbox_dir(), settings.sandbox_user))
    return SandboxEnvironments(sandbox, connect, default=settings.default_environment or "contoso")


def discovery_url(settings: ServerSettings) -> str:
    """DATAVERSE_DISCOVERY_URL, else the Global Discovery service of the authority's cloud."""
    if settings.discovery_url:
        return settings.discovery_url
    host = settings.authority_host.split("://", 1)[-1].split("/", 1)[0].lower()
    return DISCOVERY_BY_AUTHORITY.get(host, DEFAULT_DISCOVERY_URL)


def open_user_environments(
    settings: ServerSettings, http: httpx2.AsyncClient, stack: AsyncExitStack, retry: RetryPolicy | None = None
) -> Environments:
    """Each HTTP caller's environments, reached on their behalf; nothing is called before a user is."""
    from ._credentials import build_exchange

    exchange = build_exchange(settings)
    stack.callback(exchange.close)
    return UserEnvironments(
        lambda caller: exchange.for_user(caller.key, caller.token),
        http,
        _connector(http, settings, retry),
        settings.configured_environments(),
        discovery_url(settings),
        default=settings.default_environment,
    )


def is_per_user(settings: ServerSettings, transport: str) -> bool:
    """Over HTTP with on-behalf-of, each caller signs in and reaches Dataverse as themselves."""
    return transport == "http" and settings.auth_mode(transport) == "on-behalf-of" and not settings.user_assertion


def protected_resource(settings: ServerSettings, resource_url: str) -> tuple[AuthSettings, EntraTokenVerifier]:
    """RFC 9728 metadata naming the authority, and the validation of callers' tokens."""
    from ._token_verifier import EntraTokenVerifier  # pyjwt: needed only when callers sign in

    if not settings.tenant_id or not settings.client_id:
        raise ConfigurationError(
            "Serving users over HTTP needs the server's app registration: AZURE_TENANT_ID=<tenant id> and "
            "AZURE_CLIENT_ID=<the server's application (client) id>."
        )
    authority = f"{settings.authority_host}/{settings.tenant_id}"
    audiences = list(settings.audience) or [settings.client_id, f"api://{settings.client_id}"]
    tenants = settings.allowed_tenants or (
        None if settings.tenant_id in ("common", "organizations") else frozenset({settings.tenant_id.lower()})
    )
    http = build_http_client(settings.connection())
    verifier = EntraTokenVerifier(http, authority, audiences, tenants)
    auth = AuthSettings(
        issuer_url=AnyHttpUrl(f"{authority}/v2.0"),
        resource_server_url=AnyHttpUrl(resource_url),
        required_scopes=list(settings.required_scopes) or None,
        validate_token_resource=False,  # the verifier checks the audience: Entra tokens name an app, not a URL
    )
    return auth, verifier


async def check_policy_lists(policy: Policy, environments: StaticEnvironments | SandboxEnvironments) -> None:
    """At start-up, a table or action list entry that names nothing of an environment stops the server, saying
    which.

    Tables come from the table list, operations from `$metadata`, each read only when its list is set. An
    environment that cannot be reached now is checked on first use instead (its tools are refused then). With
    a list, start-up waits for the embedded sandbox; without one, it never does.
    """

    async def tables(environment: Environment) -> None:
        policy.resolve(environment.name, await environment.client.list_tables())

    async def actions(environment: Environment) -> None:
        policy.resolve_actions(environment.name, await environment.client.operations())

    checks = [
        (what, check)
        for what, check, wanted in (("table", tables, policy.lists_tables), ("action", actions, policy.lists_actions))
        if wanted
    ]
    if not checks:
        return
    try:
        listed = await environments.all()
    except DataverseError as error:  # the embedded sandbox did not start: every tool call says so
        logger.warning("Could not check the %s policy now: %s", " and ".join(what for what, _ in checks), error)
        return
    for environment in listed:
        for what, check in checks:
            try:
                await check(environment)
            except DataverseError as error:
                logger.warning("Could not check the %s policy against %s now: %s", what, environment.name, error)
            except PolicyError as error:
                raise ConfigurationError(str(error)) from None


def cursors(settings: ServerSettings, transport: str) -> Cursors:
    """Paging cursors signed with DYNAMICS_MCP_CURSOR_KEY, else with a key made for this process."""
    if settings.cursor_key is not None:
        return Cursors(settings.cursor_key.get_secret_value().encode())
    if transport == "http":
        logger.warning(
            "DYNAMICS_MCP_CURSOR_KEY is not set: paging cursors are signed with a key made for this process, so "
            "they do not survive a restart and other replicas refuse them. Give every replica the same key."
        )
    return Cursors.with_new_key()


def change_tokens(settings: ServerSettings) -> Cursors:
    """`list_changes` tokens signed with DYNAMICS_MCP_CURSOR_KEY, else with the key kept in the user's data
    directory: a workflow's token must open after a restart."""
    if settings.cursor_key is not None:
        return Cursors(settings.cursor_key.get_secret_value().encode())
    try:
        return Cursors(kept_key(data_home()))
    except OSError as error:
        logger.warning(
            "Could not keep the key that signs change tokens (%s): tokens from list_changes will not open after "
            "this process ends. Set DYNAMICS_MCP_CURSOR_KEY to keep them.",
            error,
        )
        return Cursors.with_new_key()


def build_server(
    settings: ServerSettings,
    *,
    transport: Literal["stdio", "http"] = "stdio",
    resource_url: str | None = None,
    retry: RetryPolicy | None = None,
) -> MCPServer[AppState]:
    """The MCP server for these settings; its lifespan owns the HTTP client and the environments.

    Over HTTP with on-behalf-of, the server is an OAuth protected resource (`resource_url` names it) and
    every tool call runs as the caller. `retry` replaces the default retry policy, e.g. with one whose clock
    does not wait (tests).
    """
    policy = Policy(
        read_only=settings.read_only,
        allowed_tables=settings.allowed_tables,
        denied_tables=settings.denied_tables,
        tool_scopes=settings.tool_scopes,
        toolsets=settings.toolsets,
        max_writes=settings.max_writes,
        allowed_actions=settings.allowed_actions,
        denied_actions=settings.denied_actions,
        trusted_actions=settings.trusted_actions,
    )
    per_user = is_per_user(settings, transport)
    auth, verifier = protected_resource(settings, resource_url or "") if per_user else (None, None)

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(build_http_client(settings.connection()))
            environments: Environments
            if verifier is not None:
                stack.push_async_callback(verifier.http.aclose)
                environments = open_user_environments(settings, http, stack, retry)
            else:
                environments = await open_environments(settings, http, stack, retry)
                if isinstance(environments, StaticEnvironments | SandboxEnvironments):
                    await check_policy_lists(policy, environments)
            yield AppState(
                environments=environments,
                policy=policy,
                cursors=cursors(settings, transport),
                change_tokens=change_tokens(settings),
            )

    return MCPServer[AppState](
        "dynamics-mcp",
        version=__version__,
        instructions=instructions(policy),
        lifespan=lifespan,
        log_level="WARNING",
        tools=build_tools(policy),
        auth=auth,
        token_verifier=verifier,
    )
