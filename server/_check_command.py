"""`dynamics-mcp check` and `dynamics-mcp login`: test the connection, sign a user in."""

from __future__ import annotations

import sys
import time
from contextlib import AsyncExitStack

from dataverse import ConnectionSettings, DataverseError, RetryPolicy, TransportError, build_http_client

from ._app import open_environments
from ._credentials import build_credential, scope_for
from ._settings import ConfigurationError, ServerSettings


def _say(line: str) -> None:
    print(line, flush=True)  # noqa: T201 - the command's report


async def check(settings: ServerSettings) -> int:
    """WhoAmI and the version of each environment, with latency; failures explained in plain words."""
    connection = ConnectionSettings(connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout)
    failures = 0
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(build_http_client(connection))
        # A diagnosis, not a workload: one quick repeat, so an unreachable environment is reported in seconds.
        environments = await open_environments(settings, http, stack, RetryPolicy(max_attempts=2))
        for environment in await environments.all():
            started = time.perf_counter()
            try:
                identity = await environment.client.whoami()
                version = await environment.client.version()
            except TransportError as error:
                failures += 1
                _say(f"{environment.name}: FAILED: {environment.url} is unreachable. {error}")
            except DataverseError as error:
                failures += 1
                _say(f"{environment.name}: FAILED: {error}")
            else:
                latency = (time.perf_counter() - started) * 1000
                _say(
                    f"{environment.name}: OK {environment.url} user={identity.user_id} "
                    f"organization={identity.organization_id} version={version} latency={latency:.0f} ms"
                )
    return 1 if failures else 0


async def login(settings: ServerSettings) -> int:
    """Sign the user in, in the browser where one can be opened, else with a device code (on stderr); cache the
    tokens, encrypted, for `serve`."""
    if settings.auth_mode() not in ("device-code", "interactive"):
        raise ConfigurationError("login is for delegated sign-in: unset DATAVERSE_ACCESS_TOKEN and app credentials.")
    credential = build_credential(settings, interactive=True)
    try:
        for environment in settings.configured_environments():
            await credential.token(scope_for("device-code", environment.url))
    finally:
        credential.close()
    print("Signed in; the tokens are cached, encrypted, for dynamics-mcp serve.", file=sys.stderr)  # noqa: T201
    return 0
