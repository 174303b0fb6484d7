"""`dynamics-mcp check` and `dynamics-mcp login`: test the connection, sign a user in."""

from __future__ import annotations

import sys
import time
from contextlib import AsyncExitStack
from typing import Final

from auth import AuthError
from dataverse import DataverseError, RetryPolicy, TransportError, build_http_client, discovery_scope

from ._app import discovery_url, open_environments
from ._credentials import build_credential, scope_for
from ._settings import ConfigurationError, ServerSettings

SIGN_IN_HINT: Final = (
    "Review the sign-in settings: DYNAMICS_MCP_AUTH and the variables of its mode (AZURE_TENANT_ID, "
    "AZURE_CLIENT_ID, and its secret or certificate for an application)."
)


def _say(line: str) -> None:
    print(line, flush=True)  # noqa: T201 - the command's report


def _explained(error: DataverseError) -> str:
    """The failure in plain words, without the hint to run `dynamics-mcp check` that it carries elsewhere."""
    if "dynamics-mcp check" in error.hint:
        error.hint = SIGN_IN_HINT if isinstance(error, AuthError) else ""
    return str(error)


async def check(settings: ServerSettings) -> int:
    """WhoAmI and the version of each environment, with latency; failures explained in plain words."""
    failures = 0
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(build_http_client(settings.connection()))
        # A diagnosis, not a workload: one quick repeat, so an unreachable environment is reported in seconds.
        environments = await open_environments(settings, http, stack, RetryPolicy(max_attempts=2))
        try:
            found = await environments.all()
        except DataverseError as error:  # discovery, or the embedded sandbox, failed
            _say(f"environments: FAILED: {_explained(error)}")
            return 1
        for environment in found:
            started = time.perf_counter()
            try:
                identity = await environment.client.whoami()
                version = await environment.client.version()
            except TransportError as error:
                failures += 1
                _say(f"{environment.name}: FAILED: {environment.url} is unreachable. {_explained(error)}")
            except DataverseError as error:
                failures += 1
                _say(f"{environment.name}: FAILED: {_explained(error)}")
            else:
                latency = (time.perf_counter() - started) * 1000
                _say(
                    f"{environment.name}: OK {environment.url} user={identity.user_id} "
                    f"organization={identity.organization_id} version={version} latency={latency:.0f} ms"
                )
    return 1 if failures else 0


async def login(settings: ServerSettings) -> int:
    """Sign the user in, in the browser where one can be opened, else with a device code (on stderr); cache the
    tokens, encrypted, for `serve`. Nothing to sign in to is a ConfigurationError, never a success."""
    scopes = _sign_in_scopes(settings)
    credential = build_credential(settings, interactive=True)
    try:
        for scope in scopes:
            await credential.token(scope)
    finally:
        credential.close()
    print("Signed in; the tokens are cached, encrypted, for dynamics-mcp serve.", file=sys.stderr)  # noqa: T201
    return 0


def _sign_in_scopes(settings: ServerSettings) -> list[str]:
    """What `serve` will ask the signed-in user's tokens for: each environment, else Global Discovery."""
    mode = settings.auth_mode()
    wanted = "login is for a person's own sign-in (DYNAMICS_MCP_AUTH=interactive or device-code)"
    if mode == "token":
        raise ConfigurationError(
            f"Nothing to sign in to: a ready token is configured (DATAVERSE_ACCESS_TOKEN or access_token); {wanted}."
        )
    if mode not in ("device-code", "interactive"):
        raise ConfigurationError(f"Nothing to sign in to: the {mode} mode signs in by itself; {wanted}.")
    environments = settings.configured_environments()
    if environments:
        return [scope_for(mode, environment.url) for environment in environments]
    if settings.auth is not None:  # asked for by name: serve finds the user's environments with Global Discovery
        return [discovery_scope(discovery_url(settings))]
    raise ConfigurationError(
        "Nothing to sign in to: no environment is configured, so serve uses the embedded sandbox. Set "
        "DATAVERSE_URL=https://contoso.crm.dynamics.com, or DYNAMICS_MCP_AUTH=interactive to sign in and find "
        "your environments with Global Discovery."
    )
