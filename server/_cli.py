"""The `dynamics-mcp` command line.

Logs go to stderr, never stdout: in stdio mode stdout carries only protocol messages. Heavy imports (the
sandbox, uvicorn) happen inside the command that needs them, since start-up time is measured.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ._version import __version__


def default_sandbox_dir() -> Path:
    """Where the sandbox keeps its data unless `--data` says otherwise (XDG data directory)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dynamics-mcp" / "sandbox"


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (0 to 65535; 0 picks free ports)")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynamics-mcp",
        description="MCP server for Microsoft Dynamics 365 / Dataverse.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve MCP (stdio by default); with no environment configured, against the embedded sandbox",
    )
    serve.add_argument(
        "--transport", choices=["stdio", "http"], default="stdio", help="stdio (default) or streamable HTTP"
    )
    serve.add_argument("--host", default="127.0.0.1", help="HTTP: address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="HTTP: port (default: 8000; 0 picks a free one)")
    serve.add_argument("--config", type=Path, default=None, help="TOML configuration file (or DYNAMICS_MCP_CONFIG)")
    serve.add_argument("--read-only", action="store_true", default=None, help="do not offer the write tools")

    environments = commands.add_parser("environments", help="list the environments the configured identity reaches")
    environments.add_argument("--config", type=Path, default=None, help="TOML configuration file")
    check = commands.add_parser("check", help="test the connection to each environment (WhoAmI, version, latency)")
    check.add_argument("--config", type=Path, default=None, help="TOML configuration file")
    login = commands.add_parser(
        "login",
        help="sign a user in (browser where one exists, else device code) and cache the tokens, encrypted",
    )
    login.add_argument("--config", type=Path, default=None, help="TOML configuration file")

    sandbox = commands.add_parser(
        "sandbox",
        help="run the local Dataverse sandbox (Web API, discovery, tokens) on loopback",
        description="Serve the local Dataverse stand-in. Each environment gets its own port; the first port "
        "serves discovery and the token authority. Prints one line per endpoint once listening.",
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    sandbox.add_argument("--port", type=_port, default=0, help="first port; 0 (default) picks free ports")
    sandbox.add_argument("--data", type=Path, default=None, help=f"data directory (default: {default_sandbox_dir()})")
    sandbox.add_argument(
        "--large",
        type=int,
        default=0,
        metavar="N",
        help="add N extra accounts to the first environment when its data is created (for benchmarks)",
    )
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", metavar="[token]")
    token = sandbox_commands.add_parser("token", help="print a bearer token the sandbox accepts")
    token.add_argument("--data", type=Path, default=None, dest="token_data", help="the sandbox's data directory")
    token.add_argument(
        "--user",
        default="admin",
        help="user name: admin, alice, bob, carol, dave, erin, frank, grace, heidi, ivan, judy, kevin",
    )
    token.add_argument("--environment", default=None, help="environment name (default: the first)")
    token.add_argument("--lifetime", type=int, default=3600, help="seconds the token stays valid")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if arguments.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpcore2").setLevel(logging.WARNING)
    if arguments.command in ("serve", "environments", "check", "login"):
        from ._serve_command import list_environments, run_async_command, serve

        config = arguments.config or (
            Path(os.environ["DYNAMICS_MCP_CONFIG"]) if os.environ.get("DYNAMICS_MCP_CONFIG") else None
        )
        if arguments.command == "serve":
            return serve(
                config,
                read_only=arguments.read_only,
                transport=arguments.transport,
                host=arguments.host,
                port=arguments.port,
            )
        if arguments.command == "environments":
            return list_environments(config)
        return run_async_command(arguments.command, config)
    if arguments.command == "sandbox":
        from ._sandbox_command import print_token, run_sandbox

        if arguments.sandbox_command == "token":
            return print_token(
                arguments.token_data or arguments.data or default_sandbox_dir(),
                arguments.user,
                arguments.environment,
                arguments.lifetime,
            )
        return run_sandbox(arguments.data or default_sandbox_dir(), arguments.host, arguments.port, arguments.large)
    raise AssertionError(arguments.command)
