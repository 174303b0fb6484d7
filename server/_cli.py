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
from typing import Final

from ._data_directory import default_sandbox_dir, embedded_sandbox_dir
from ._version import __version__

# The sandbox's users by what each may do: its directory (`sandbox.USERS`) says the same, as a test checks.
SANDBOX_USERS: Final = (
    ("admin", "System Administrator in contoso and fabrikam"),
    ("alice", "Salesperson in contoso and fabrikam"),
    ("bob", "Salesperson in contoso"),
    ("frank, grace, heidi, ivan, judy, kevin", "Salesperson in contoso, owning none of the demo rows"),
    ("carol", "Sales Reader in contoso"),
    ("dave", "Salesperson in fabrikam"),
    ("erin", "no role in any environment"),
)

CHECK_DESCRIPTION: Final = """\
Connect to each environment as `serve` would, and say per environment: OK with the user, organization,
version and latency, or FAILED and why in plain words. Exit status: 0 all OK, 1 one failed, 2 the
configuration is wrong.

Environments: DATAVERSE_URL (and DATAVERSE_API_VERSION), or [[environments]] in the --config file
(DYNAMICS_MCP_CONFIG). With none: the person's own, from Global Discovery (DATAVERSE_DISCOVERY_URL), when
DYNAMICS_MCP_AUTH is device-code or interactive or the mode is password; else the embedded sandbox.

Sign-in: DYNAMICS_MCP_AUTH, else the mode that what is set implies:
  token             DATAVERSE_ACCESS_TOKEN
  client-secret     AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET
  certificate       AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_CERTIFICATE_PATH (PEM or PFX),
                    AZURE_CLIENT_CERTIFICATE_PASSWORD
  managed-identity  IDENTITY_ENDPOINT and IDENTITY_HEADER (App Service); AZURE_CLIENT_ID for a
                    user-assigned identity
  password          AZURE_USERNAME, AZURE_PASSWORD (AZURE_TENANT_ID, AZURE_CLIENT_ID)
  on-behalf-of      DYNAMICS_MCP_USER_ASSERTION (a user's token), AZURE_TENANT_ID, AZURE_CLIENT_ID and
                    AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH
  device-code, interactive
                    the tokens `dynamics-mcp login` cached (AZURE_TENANT_ID, AZURE_CLIENT_ID)
Connections: AZURE_AUTHORITY_HOST, SSL_CERT_FILE, HTTPS_PROXY and NO_PROXY, DATAVERSE_CONNECT_TIMEOUT,
DATAVERSE_READ_TIMEOUT.
"""

LOGIN_DESCRIPTION: Final = """\
Sign a person in and cache their tokens, encrypted, for `serve`, `check` and `environments`.

Modes (DYNAMICS_MCP_AUTH):
  interactive   in the browser (BROWSER, or the desktop's)
  device-code   a code to enter on the sign-in page, printed on stderr
  unset         the browser where one can be opened, else a device code
The other modes (token, client-secret, certificate, managed-identity, password, on-behalf-of) sign in by
themselves, so login refuses them.

Variables: DATAVERSE_URL or [[environments]] in the --config file (DYNAMICS_MCP_CONFIG): whose tokens to
get; with none and DYNAMICS_MCP_AUTH set, Global Discovery's (DATAVERSE_DISCOVERY_URL). AZURE_TENANT_ID
(default: organizations), AZURE_CLIENT_ID (a public client registration; default: Azure CLI's),
AZURE_USERNAME (the account to sign in), AZURE_AUTHORITY_HOST, SSL_CERT_FILE. The cache:
DYNAMICS_MCP_TOKEN_CACHE, default $XDG_CACHE_HOME/dynamics-mcp/token-cache.bin, encrypted with a key kept
in $XDG_CONFIG_HOME/dynamics-mcp/token-cache.key.
"""

SANDBOX_DESCRIPTION: Final = """\
Serve the local Dataverse stand-in until interrupted. Once listening it prints one line per endpoint, then
what per-user sign-in needs (tenant, CA, the app registrations and where the server app's secret is) and a
token command.

Ports, from --port N (0, the default: a free port each):
  N     Global Discovery (/api/discovery/v2.0/Instances), the managed-identity endpoint (/msi/token),
        fault injection (/_sandbox/faults) and the request log (/_sandbox/requests)
  N+1   environment contoso: its Web API (/api/data/v9.2)
  N+2   environment fabrikam: its Web API (/api/data/v9.2)
  N+3   the identity provider (the token authority, as Entra ID), over TLS with the data directory's CA
All but the last speak plain HTTP. The data directory keeps the databases, the signing key, the
registrations' secrets and passwords (identity.json) and the CA between runs; delete it to start again.
"""


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
    explained = argparse.RawDescriptionHelpFormatter

    serve = commands.add_parser(
        "serve",
        help="serve MCP (stdio by default); with no environment configured, against the embedded sandbox",
        description="Serve MCP. With no environment configured it serves the embedded sandbox, whose data is "
        f"kept between runs in {embedded_sandbox_dir()} (delete it to start again from the demo data).",
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
    check = commands.add_parser(
        "check",
        help="test the connection to each environment (WhoAmI, version, latency)",
        description=CHECK_DESCRIPTION,
        formatter_class=explained,
    )
    check.add_argument("--config", type=Path, default=None, help="TOML configuration file")
    login = commands.add_parser(
        "login",
        help="sign a user in (browser where one exists, else device code) and cache the tokens, encrypted",
        description=LOGIN_DESCRIPTION,
        formatter_class=explained,
    )
    login.add_argument("--config", type=Path, default=None, help="TOML configuration file")

    sandbox = commands.add_parser(
        "sandbox",
        help="run the local Dataverse sandbox (Web API, discovery, tokens) on loopback",
        description=SANDBOX_DESCRIPTION,
        formatter_class=explained,
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    sandbox.add_argument("--port", type=_port, default=0, help="the first of the four ports (see above)")
    sandbox.add_argument("--data", type=Path, default=None, help=f"data directory (default: {default_sandbox_dir()})")
    sandbox.add_argument(
        "--large",
        type=int,
        default=0,
        metavar="N",
        help="add N extra accounts to the first environment when its data is created (for benchmarks)",
    )
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", metavar="[token]")
    token = sandbox_commands.add_parser(
        "token",
        help="print a bearer token the sandbox accepts",
        description="Print a bearer token that the sandbox serving the data directory accepts: for an "
        "environment's Web API, for discovery, or (--app mcp-server) for the MCP server's API, as the "
        "client app mcp-client obtains it from the sandbox's identity provider when the user signs in.",
    )
    token.add_argument("--data", type=Path, default=None, dest="token_data", help="the sandbox's data directory")
    token.add_argument(
        "--user",
        default="admin",
        help="who the token is for (default: admin): "
        + "; ".join(f"{names} ({what})" for names, what in SANDBOX_USERS),
    )
    token.add_argument(
        "--environment", default=None, help="contoso, fabrikam or discovery (default: the first environment)"
    )
    token.add_argument(
        "--app",
        default=None,
        choices=["mcp-server"],
        help="a caller's token for the MCP server's API (dynamics-mcp serve --transport http as the sandbox's "
        "mcp-server app) instead; the sandbox must be running",
    )
    token.add_argument("--lifetime", type=int, default=3600, help="seconds the token stays valid (not with --app)")
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
        from ._sandbox_command import print_caller_token, print_token, run_sandbox

        if arguments.sandbox_command == "token":
            data = arguments.token_data or arguments.data or default_sandbox_dir()
            if arguments.app is not None:
                return print_caller_token(data, arguments.user)
            return print_token(data, arguments.user, arguments.environment, arguments.lifetime)
        return run_sandbox(arguments.data or default_sandbox_dir(), arguments.host, arguments.port, arguments.large)
    raise AssertionError(arguments.command)
