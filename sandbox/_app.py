"""The running sandbox: environments on their own loopback ports, discovery, faults, and a request log.

Each environment gets its own origin (`http://127.0.0.1:<port>`), as each real environment has its own host,
so a client that mishandles an environment URL fails here as it would against Dataverse. One more port
serves the Global Discovery service and the token authority. All ports share one ASGI application and one
uvicorn server; the port a request arrived on says which site it is for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import socket
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote_plus

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._certificates import TlsFiles
from ._directory import ENVIRONMENTS, TENANT_ID, find_environment, find_user
from ._discovery import Discovery
from ._environment import Environment
from ._faults import FaultInjector, FaultMiddleware, fault_from_json
from ._identity import IdentityProvider, IdentitySecrets
from ._seed import add_accounts, seed
from ._store import Store
from ._tables import build_catalog
from ._tokens import SigningKey
from ._webapi import WebApi, error_response

logger = logging.getLogger(__name__)

ENDPOINTS_FILE: Final = "sandbox.json"
LOOPBACK: Final = "127.0.0.1"


@dataclass
class RequestRecord:
    """What reached the sandbox: never the token itself, only a digest to compare against."""

    site: str
    method: str
    path: str
    status: int
    object_id: str | None
    client_id: str | None
    token_sha256: str | None
    query: str = ""  # the query string, percent-decoded: what a request asked for, e.g. its $filter


@dataclass
class RequestLog:
    records: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=10000))
    _appended: anyio.Event | None = field(default=None, repr=False)

    def append(self, record: RequestRecord) -> None:
        self.records.append(record)
        if self._appended is not None:
            self._appended.set()
            self._appended = None

    async def wait_until(self, condition: Callable[[Sequence[RequestRecord]], bool]) -> None:
        """Return once `condition` holds for the records: a request a client gave up on still finishes later."""
        while not condition(self.records):
            if self._appended is None:
                self._appended = anyio.Event()
            await self._appended.wait()

    def as_json(self) -> list[dict[str, Any]]:
        return [record.__dict__ for record in self.records]


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, log: RequestLog, sites: dict[int, str]) -> None:
        self.app = app
        self.log = log
        self.sites = sites

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        status = 0

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            headers = dict(scope["headers"])
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            token = authorization.partition(" ")[2].strip() or None
            claims = scope.get("state", {}).get("claims") or {}
            self.log.append(
                RequestRecord(
                    site=self.sites.get(scope["server"][1], "?"),
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    object_id=claims.get("oid"),
                    client_id=claims.get("appid") or claims.get("azp"),
                    token_sha256=hashlib.sha256(token.encode()).hexdigest() if token else None,
                    query=unquote_plus(scope.get("query_string", b"").decode("latin-1")),
                )
            )


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it a small response waits on the client's delayed ACK (~40 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without signal handling (the host process, a test or `serve`, owns its signals) that stops at
    once: tests start and stop a sandbox each, and uvicorn's 0.1 s tick and shutdown pause add up there."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit = asyncio.Event()

    def exit_now(self) -> None:
        self.should_exit = True
        self._exit.set()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):  # uvicorn's tick, ended early by exit_now()
                    await self._exit.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Close the listeners, ask open connections to finish, and wait (bounded) until they have."""
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                # uvicorn signals no event when its connections and tasks are done: poll briefly.
                while self.server_state.connections or self.server_state.tasks:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
        for server in self.servers:
            await server.wait_closed()


class Sandbox:
    """Dataverse environments, discovery and tokens on loopback, backed by SQLite files in `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        extra_accounts: int = 0,
        metadata_padding_mb: int = 0,
        handle_signals: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.extra_accounts = extra_accounts
        self.metadata_padding_mb = metadata_padding_mb  # $metadata of at least this size, for benchmarks
        self.handle_signals = handle_signals
        self.faults = FaultInjector()
        self.request_log = RequestLog()
        self.environments: dict[str, Environment] = {}
        self.discovery_url = ""
        self._servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
        self._ports: list[int] = []  # the ports of the first start; a restart serves on them again
        self._signing_key: SigningKey | None = None
        self._identity: IdentityProvider | None = None

    # -- data ----------------------------------------------------------------------------------------------

    @property
    def signing_key(self) -> SigningKey:
        if self._signing_key is None:
            self._signing_key = SigningKey.load_or_create(self.data_dir)
        return self._signing_key

    @property
    def identity(self) -> IdentityProvider:
        """The token authority, with the registrations' generated secrets (created on first use)."""
        if self._identity is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._identity = IdentityProvider(self.signing_key, IdentitySecrets.load_or_create(self.data_dir), [])
        return self._identity

    @property
    def authority(self) -> str:
        """The token authority MSAL is pointed at: `https://127.0.0.1:<port>/<tenant>`."""
        return self.identity.authority

    @property
    def ca_file(self) -> Path:
        """The CA certificate clients trust to reach the identity provider over TLS."""
        return TlsFiles.ensure(self.data_dir).ca

    @property
    def managed_identity_endpoint(self) -> str:
        return f"{self.discovery_url}/msi/token"

    def _open_stores(self) -> dict[str, Store]:
        catalog = build_catalog()
        stores = {}
        for spec in ENVIRONMENTS:
            store = Store(self.data_dir / f"{spec.name}.sqlite", catalog)
            if store.is_empty():
                seed(store, spec)
                if self.extra_accounts and spec.name == ENVIRONMENTS[0].name:
                    add_accounts(store, spec, self.extra_accounts)
            stores[spec.name] = store
        return stores

    def prepare(self) -> None:
        """Create the data directory's keys, certificates and seeded databases without serving them."""
        TlsFiles.ensure(self.data_dir)
        _ = self.identity  # the signing key and the registrations' secrets
        for store in self._open_stores().values():
            store.close()

    # -- serving -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        stores = self._open_stores()
        # Started again, it keeps its URLs: clients keep working and tokens (whose audience is a URL) stay valid.
        ports = self._ports or [0 if self.port == 0 else self.port + index for index in range(len(stores) + 2)]
        sockets = [_bind(self.host, port) for port in ports]
        self._ports = [sock.getsockname()[1] for sock in sockets]
        host = f"[{self.host}]" if ":" in self.host else self.host
        identity_socket = sockets.pop()
        self.identity.base_url = f"https://{host}:{identity_socket.getsockname()[1]}"
        urls = [f"http://{host}:{sock.getsockname()[1]}" for sock in sockets]
        self.discovery_url = urls[0]
        sites = {sockets[0].getsockname()[1]: "discovery"}
        web_apis: dict[int, WebApi] = {}
        for sock, url, (name, store) in zip(sockets[1:], urls[1:], stores.items(), strict=True):
            spec = find_environment(name)
            assert spec is not None
            environment = Environment(spec, url, store, metadata_padding_mb=self.metadata_padding_mb)
            self.environments[name] = environment
            port = sock.getsockname()[1]
            sites[port] = name
            web_apis[port] = WebApi(environment, self.signing_key, self.authority, self.faults)
        self.identity.audiences = [*urls[1:], self.discovery_url]
        discovery = Discovery(self, self.signing_key)
        application = self._application(sites, web_apis, discovery)
        tls = TlsFiles.ensure(self.data_dir)
        identity_application = Starlette(routes=[Route("/{path:path}", self.identity.handle, methods=["GET", "POST"])])
        await self._serve(
            uvicorn.Config(application, log_level="warning", lifespan="off", access_log=False),
            sockets,
        )
        await self._serve(
            uvicorn.Config(
                identity_application,
                log_level="warning",
                lifespan="off",
                access_log=False,
                ssl_certfile=str(tls.certificate),
                ssl_keyfile=str(tls.key),
            ),
            [identity_socket],
        )
        self._write_endpoints()

    async def _serve(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        """Start one uvicorn server on `sockets` and wait until it listens."""
        server = (uvicorn.Server if self.handle_signals and not self._servers else _EmbeddedServer)(config)
        task = asyncio.create_task(server.serve(sockets=sockets))
        self._servers.append((server, task))
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the sandbox stopped while starting")
            await asyncio.sleep(0.01)

    def _application(self, sites: dict[int, str], web_apis: dict[int, WebApi], discovery: Discovery) -> Starlette:
        async def web_api(request: Request) -> Response:
            port = request.scope["server"][1]
            if port in web_apis and request.url.path.startswith("/api/search/"):
                from ._search import answer_search  # deferred: needed only by Dataverse search requests

                return await answer_search(web_apis[port], request)
            if port in web_apis:
                return await web_apis[port](request)
            if request.url.path.startswith("/api/discovery/"):
                return await discovery(request)
            return Response(status_code=404)

        async def faults(request: Request) -> Response:
            if request.method == "DELETE":
                self.faults.clear()
                return Response(status_code=204)
            if request.method == "GET":
                return JSONResponse([fault.__dict__ for fault in self.faults.faults])
            try:
                fault = self.faults.add(fault_from_json(json.loads(await request.body())))
            except (ValueError, TypeError) as error:
                return JSONResponse({"error": str(error)}, status_code=400)
            return JSONResponse(fault.__dict__, status_code=201)

        async def requests(request: Request) -> Response:
            if request.method == "DELETE":
                self.request_log.records.clear()
                return Response(status_code=204)
            return JSONResponse(self.request_log.as_json())

        routes = [
            Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
            Route("/_sandbox/requests", requests, methods=["GET", "DELETE"]),
            Route("/msi/token", self.identity.managed_identity, methods=["GET"]),
        ]
        middleware = [
            Middleware(RequestLogMiddleware, log=self.request_log, sites=sites),
            Middleware(FaultMiddleware, injector=self.faults),
        ]
        application = Starlette(routes=routes, middleware=middleware, exception_handlers={500: _internal_error})

        async def everything_else(scope: Scope, receive: Receive, send: Send) -> None:
            # The router's fallback rather than a `/{path:path}` route: route patterns do not match
            # percent-decoded newlines, which key values may hold.
            response = await web_api(Request(scope, receive))
            await response(scope, receive, send)

        application.router.default = everything_else
        return application

    def _write_endpoints(self) -> None:
        endpoints = {
            "environments": {name: environment.url for name, environment in self.environments.items()},
            "discovery": self.discovery_url,
            "authority": self.authority,
            "tenant": str(TENANT_ID),
            "ca": str(TlsFiles.ensure(self.data_dir).ca),
            "managed_identity_endpoint": self.managed_identity_endpoint,
        }
        (self.data_dir / ENDPOINTS_FILE).write_text(json.dumps(endpoints, indent=2) + "\n", encoding="utf-8")

    async def stop(self) -> None:
        """Stop serving; `start` serves the same data again, on the same ports."""
        for server, _ in self._servers:
            if isinstance(server, _EmbeddedServer):
                server.exit_now()
            else:
                server.should_exit = True
        for _, task in self._servers:
            await task
        self._servers.clear()
        for environment in self.environments.values():
            environment.store.close()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        await asyncio.gather(*(task for _, task in self._servers))

    # -- tokens --------------------------------------------------------------------------------------------

    def token(self, user: str = "admin", environment: str | None = None, *, lifetime: int = 3600) -> str:
        """A delegated bearer token for `user` that this sandbox's `environment` accepts."""
        name = environment or ENVIRONMENTS[0].name
        audience = self.environments[name].url if name in self.environments else self.discovery_url
        return mint_token(self.signing_key, user, audience, self.authority, lifetime=lifetime)

    def discovery_token(self, user: str = "admin", *, lifetime: int = 3600) -> str:
        return mint_token(self.signing_key, user, self.discovery_url, self.authority, lifetime=lifetime)

    def expire_tokens(self) -> None:
        """Refuse every token presented so far as expired, as when a session's token runs out mid-session."""
        self.signing_key.expired.update(
            record.token_sha256 for record in self.request_log.records if record.token_sha256 is not None
        )


def mint_token(key: SigningKey, user_name: str, audience: str, authority: str, *, lifetime: int = 3600) -> str:
    user = find_user(user_name)
    if user is None:
        raise LookupError(f"no sandbox user '{user_name}'")
    return key.issue_user_token(user, audience, f"{authority}/v2.0", lifetime=lifetime)


def read_endpoints(data_dir: Path) -> dict[str, Any]:
    """The URLs a sandbox serving `data_dir` wrote once it was listening."""
    path = Path(data_dir) / ENDPOINTS_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"no sandbox has served {data_dir} yet: start one with 'dynamics-mcp sandbox --data {data_dir}'"
        )
    endpoints: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return endpoints


async def _internal_error(request: Request, exc: Exception) -> Response:
    from ._errors import WebApiError

    logger.exception("sandbox request failed", exc_info=exc)
    return error_response(WebApiError(500, "0x80040216", "An unexpected error occurred."))
