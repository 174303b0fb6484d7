"""`dynamics-mcp sandbox` and `dynamics-mcp sandbox token`."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import sys
from pathlib import Path


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


def run_sandbox(data_dir: Path, host: str, port: int, large: int) -> int:
    from sandbox import Sandbox

    _refuse_public_host(host)

    async def serve() -> None:
        async with Sandbox(data_dir, host=host, port=port, extra_accounts=large, handle_signals=True) as running:
            for name, environment in running.environments.items():
                print(f"environment {name} {environment.url}")
            print(f"discovery {running.discovery_url}")
            print(f"authority {running.authority}")
            print(f"data {data_dir}")
            print(f"token: dynamics-mcp sandbox token --data {data_dir} --user admin")
            sys.stdout.flush()
            await running.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


def print_token(data_dir: Path, user: str, environment: str | None, lifetime: int) -> int:
    from sandbox import SigningKey, mint_token, read_endpoints

    try:
        endpoints = read_endpoints(data_dir)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    environments: dict[str, str] = endpoints["environments"]
    name = environment or next(iter(environments))
    if name not in environments and name != "discovery":
        print(f"error: no environment '{name}'; known: {', '.join(environments)}, discovery", file=sys.stderr)
        return 2
    audience = endpoints["discovery"] if name == "discovery" else environments[name]
    try:
        token = mint_token(
            SigningKey.load_or_create(data_dir), user, audience, endpoints["authority"], lifetime=lifetime
        )
    except LookupError as error:
        print(f"error: {error.args[0]}; known users: admin, alice, bob, carol, dave, erin", file=sys.stderr)
        return 2
    print(token)
    return 0
