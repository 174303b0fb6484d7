"""`dynamics-mcp serve --transport http`: streamable HTTP, stateless, for many users behind a reverse proxy.

Stateless (no session held between requests), so replicas behind a load balancer need no shared state.
With on-behalf-of configured the MCP endpoint requires each caller's Entra token; without it, the server acts
as one shared identity and then binds loopback only. DNS-rebinding protection stays on: the Host and Origin
headers must name this server. TLS is the reverse proxy's job (docs/deployment.md).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Final
from urllib.parse import urlsplit

import anyio
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dataverse import is_loopback

from ._app import build_server, is_per_user
from ._settings import ConfigurationError, ServerSettings
from ._version import __version__

logger = logging.getLogger(__name__)

MCP_PATH: Final = "/mcp"
LOOPBACK_NAMES: Final = ("127.0.0.1", "localhost", "[::1]")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def transport_security(settings: ServerSettings, public_url: str, host: str) -> TransportSecuritySettings:
    """The Host and Origin values requests may carry: the public URL's, loopback's when bound there, and any set."""
    public = urlsplit(public_url)
    hosts = {public.netloc, *settings.allowed_hosts}
    origins = {f"{public.scheme}://{public.netloc}", *settings.allowed_origins}
    if is_loopback(host):
        hosts |= {f"{name}:*" for name in LOOPBACK_NAMES}
        origins |= {f"http://{name}:*" for name in LOOPBACK_NAMES}
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=sorted(hosts), allowed_origins=sorted(origins)
    )


def http_app(settings: ServerSettings, host: str, port: int) -> Starlette:
    """The ASGI application: `/mcp`, its RFC 9728 metadata when callers sign in, and `/healthz`."""
    public_url = settings.public_url or f"http://{_url_host(host)}:{port}"
    if not is_per_user(settings, "http") and not is_loopback(host):
        raise ConfigurationError(
            f"--host {host}: serving HTTP beyond loopback needs each caller to sign in. Configure on-behalf-of "
            "(AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH), "
            "or use --host 127.0.0.1."
        )
    server = build_server(settings, transport="http", resource_url=f"{public_url}{MCP_PATH}")

    server.custom_route("/healthz", methods=["GET"])(health)
    return server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        transport_security=transport_security(settings, public_url, host),
        host=host,
    )


async def health(_: Request) -> Response:
    """For load balancers and orchestrators: answers without authentication, touches nothing downstream."""
    return JSONResponse({"status": "ok", "version": __version__})


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so that port 0 resolves to a real port before the app is built."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise ConfigurationError(f"--host {host} --port {port}: cannot listen there ({error.strerror}).") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn whose signals belong to the host process (the command installs its own; a test has none)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def running(settings: ServerSettings, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve in this process until the block ends; yields the base URL (`<url>/mcp` is the endpoint)."""
    sock = bind(host, port)
    with sock:
        bound = sock.getsockname()[1]
        app = http_app(settings, host, bound)
        server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve, [sock])
            while not server.started:
                if server.should_exit:
                    raise ConfigurationError("The HTTP server did not start; see the log above.")
                await anyio.sleep(0.01)
            try:
                yield f"http://{_url_host(host)}:{bound}"
            finally:
                server.should_exit = True


def serve_http(settings: ServerSettings, host: str, port: int) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM), saying where on stderr."""
    import signal

    async def main() -> None:
        async with running(settings, host, port) as url:
            logger.warning("Serving MCP over streamable HTTP at %s%s", url, MCP_PATH)
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    return

    anyio.run(main)
