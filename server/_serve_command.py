"""`dynamics-mcp serve` and `dynamics-mcp environments`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from ._settings import ConfigurationError, ServerSettings, load_settings


def _settings(config: Path | None, **flags: Any) -> ServerSettings | None:
    try:
        return load_settings(config, **{name: value for name, value in flags.items() if value is not None})
    except ConfigurationError as error:
        print(f"dynamics-mcp: {error}", file=sys.stderr)  # noqa: T201 - the command's own error report
        return None


def serve(config: Path | None, *, read_only: bool | None, transport: str = "stdio", host: str, port: int) -> int:
    """Serve MCP over stdio until the client closes the stream, or over HTTP until interrupted."""
    settings = _settings(config, read_only=read_only)
    if settings is None:
        return 2
    try:
        if transport == "http":
            from ._http import serve_http

            serve_http(settings, host, port)
        else:
            from ._app import build_server

            build_server(settings).run("stdio")
    except (ConfigurationError, BaseExceptionGroup) as error:
        # A configuration error found at start-up (the lifespan) arrives wrapped by the transport's task group.
        found = configuration_error(error)
        if found is None:
            raise
        print(f"dynamics-mcp: {found}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


def configuration_error(error: BaseException) -> ConfigurationError | None:
    """The configuration error `error` is or holds, however deep in exception groups."""
    if isinstance(error, ConfigurationError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = configuration_error(inner)
            if found is not None:
                return found
    return None


def list_environments(config: Path | None) -> int:
    """Print the environments, one per line: name, URL, friendly name."""
    settings = _settings(config)
    if settings is None:
        return 2
    from contextlib import AsyncExitStack

    from dataverse import DataverseError, build_http_client

    from ._app import open_environments

    async def run() -> int:
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(build_http_client(settings.connection()))
            environments = await open_environments(settings, http, stack)
            for environment in await environments.all():
                print(f"{environment.name}\t{environment.url}\t{environment.friendly_name or ''}")  # noqa: T201
        return 0

    try:
        return asyncio.run(run())
    except (ConfigurationError, DataverseError) as error:  # a sign-in or discovery failure, explained
        print(f"dynamics-mcp: {error}", file=sys.stderr)  # noqa: T201
        return 2


def run_async_command(command: str, config: Path | None) -> int:
    """`check` or `login`: their failures are configuration or sign-in problems, reported on stderr."""
    from dataverse import DataverseError

    from ._check_command import check, login

    settings = _settings(config)
    if settings is None:
        return 2
    try:
        return asyncio.run(check(settings) if command == "check" else login(settings))
    except (ConfigurationError, DataverseError) as error:
        print(f"dynamics-mcp: {error}", file=sys.stderr)  # noqa: T201
        return 2
