"""`dynamics-mcp sandbox` and `dynamics-mcp sandbox token`."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import sys
from pathlib import Path
from typing import Final

from ._data_directory import DataDirectoryLock, holder

# The sandbox's registrations for per-user sign-in over HTTP (docs/deployment.md, "Trying it locally").
SERVER_APP: Final = "c0000000-0000-4000-8000-000000000003"  # mcp-server: confidential, on-behalf-of
CLIENT_APP: Final = "c0000000-0000-4000-8000-000000000004"  # mcp-client: public, signs users in


def _refuse_public_host(host: str) -> None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise SystemExit(f"--host {host}: give an IP address such as 127.0.0.1") from None
        return
    if not address.is_loopback:
        print(
            f"warning: the sandbox is bound to {host}; anyone who can reach it can read and change its data",
            file=sys.stderr,
        )


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run_sandbox(data_dir: Path, host: str, port: int, large: int) -> int:
    from sandbox import TENANT_ID, Sandbox

    _refuse_public_host(host)
    lock = DataDirectoryLock.acquire(data_dir)
    if lock is None:
        return _error(
            f"another dynamics-mcp process (pid {holder(data_dir)}) is serving {data_dir}: stop it, or give this "
            "sandbox another directory with --data"
        )

    async def serve() -> None:
        async with Sandbox(data_dir, host=host, port=port, extra_accounts=large, handle_signals=True) as running:
            for name, environment in running.environments.items():
                print(f"environment {name} {environment.url}")
            print(f"discovery {running.discovery_url}")
            print(f"authority {running.authority}")
            print(f"tenant {TENANT_ID}")
            print(f"ca {running.ca_file}")
            print(
                f"mcp-server app {SERVER_APP}: the MCP server's registration; its secret is "
                f'"client_secrets" / "{SERVER_APP}" in {running.identity.secrets.path}'
            )
            print(
                f"mcp-client app {CLIENT_APP}: a public client that signs users in to mcp-server; "
                f"a user's token: dynamics-mcp sandbox token --data {data_dir} --user alice --app mcp-server"
            )
            print(f"data {data_dir}")
            print(f"token: dynamics-mcp sandbox token --data {data_dir} --user admin")
            sys.stdout.flush()
            await running.serve_forever()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
    finally:
        lock.release()
    return 0


def print_token(data_dir: Path, user: str, environment: str | None, lifetime: int) -> int:
    from sandbox import USERS, SigningKey, mint_token, read_endpoints

    try:
        endpoints = read_endpoints(data_dir)
    except FileNotFoundError as error:
        return _error(str(error))
    environments: dict[str, str] = endpoints["environments"]
    name = environment or next(iter(environments))
    if name not in environments and name != "discovery":
        return _error(f"no environment '{name}'; known: {', '.join(environments)}, discovery")
    audience = endpoints["discovery"] if name == "discovery" else environments[name]
    try:
        token = mint_token(
            SigningKey.load_or_create(data_dir), user, audience, endpoints["authority"], lifetime=lifetime
        )
    except LookupError as error:
        return _error(f"{error.args[0]}; known users: {', '.join(known.name for known in USERS)}")
    print(token)
    return 0


def print_caller_token(data_dir: Path, user: str) -> int:
    """A token for the MCP server's API, as mcp-client gets it when `user` signs in at the identity provider."""
    import httpx2

    from sandbox import USERS, IdentitySecrets, find_user, read_endpoints

    try:
        endpoints = read_endpoints(data_dir)
    except FileNotFoundError as error:
        return _error(str(error))
    person = find_user(user)
    if person is None or person.application_id is not None:
        return _error(f"no sandbox user '{user}'; known users: {', '.join(known.name for known in USERS)}")
    # The password grant: the sign-in a person would do in the browser, without a browser.
    form = {
        "grant_type": "password",
        "client_id": CLIENT_APP,
        "username": person.upn,
        "password": IdentitySecrets.load_or_create(data_dir).passwords[person.name],
        "scope": f"api://{SERVER_APP}/user_impersonation",
    }
    try:
        response = httpx2.post(
            f"{endpoints['authority']}/oauth2/v2.0/token",
            data=form,
            verify=ssl.create_default_context(cafile=endpoints["ca"]),
            timeout=30,
        )
    except httpx2.TransportError:
        return _error(f"no sandbox is serving {data_dir} now: start one with 'dynamics-mcp sandbox --data {data_dir}'")
    body = response.json()
    if response.status_code != 200:
        return _error(f"the sandbox's identity provider refused: {body.get('error_description', body)}")
    print(body["access_token"])
    return 0
