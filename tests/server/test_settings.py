"""Where each setting comes from: its one documented variable, its key in the TOML file, a flag; and the
connection settings (proxy, CA bundle, timeouts) reaching every HTTP client the server builds."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
import pytest
from mcp import Client

from auth import Authority, PasswordCredential
from sandbox import TENANT_ID, Sandbox, TlsFiles
from server import ConfigurationError, ServerSettings, build_server, load_settings
from server._app import protected_resource
from server._check_command import check
from server._serve_command import list_environments

from ..tools.support import structured

APP = "c0000000-0000-4000-8000-000000000001"
SERVER_APP = "c0000000-0000-4000-8000-000000000003"
PUBLIC_APP = "c0000000-0000-4000-8000-000000000004"
VARIABLES = [field.validation_alias for field in ServerSettings.model_fields.values() if field.validation_alias]
STRAY = "https://stray.example"
KEY = "k" * 32


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No setting, proxy or CA bundle of the machine running the tests; a token cache of the test's own."""
    for name in [*map(str, VARIABLES), "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "DYNAMICS_MCP_CONFIG"]:
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield


def toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(item) for item in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def config_file(path: Path, environments: list[dict[str, str]] | None = None, **settings: object) -> Path:
    lines = [f"{key} = {toml(value)}" for key, value in settings.items()]
    for environment in environments or []:
        lines += ["", "[[environments]]", *(f"{key} = {toml(value)}" for key, value in environment.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_variables_named_like_a_setting_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNAMICS_MCP_READ_ONLY", "true")
    monkeypatch.setenv("DYNAMICS_MCP_DENIED_TABLES", "systemuser")
    expected = load_settings(None)
    # URL, USERNAME (Windows always sets it), PASSWORD, AUTH, READ_ONLY, ALLOWED_TABLES, ENVIRONMENTS, PROXY...,
    # in either case, and the documented names in lower case: none is a setting's variable.
    for name in ServerSettings.model_fields:
        monkeypatch.setenv(name.upper(), STRAY)
        monkeypatch.setenv(name, STRAY)
    for variable in map(str, VARIABLES):
        monkeypatch.setenv(variable.lower(), STRAY)
    monkeypatch.setenv("ENVIRONMENTS", json.dumps([{"url": STRAY}]))
    monkeypatch.setenv("USERNAME", "mallory")
    monkeypatch.setenv("PASSWORD", "stray-password")
    monkeypatch.setenv("READ_ONLY", "false")
    monkeypatch.setenv("ALLOWED_TABLES", "account")

    settings = load_settings(None)

    assert settings == expected
    assert settings.configured_environments() == []  # no URL: the embedded sandbox, not the stray one
    assert settings.auth_mode() == "device-code"  # USERNAME and PASSWORD do not make it password sign-in
    assert settings.read_only and settings.denied_tables == {"systemuser"} and not settings.allowed_tables
    assert settings.proxy is None and settings.cursor_key is None


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("DATAVERSE_URL", "https://contoso.crm.dynamics.com/", "url", "https://contoso.crm.dynamics.com/"),
        ("AZURE_USERNAME", "alice@contoso.com", "username", "alice@contoso.com"),
        ("AZURE_PASSWORD", "pass word", "password", "pass word"),
        ("DYNAMICS_MCP_AUTH", "interactive", "auth", "interactive"),
        ("DYNAMICS_MCP_READ_ONLY", "true", "read_only", True),
        ("DYNAMICS_MCP_ALLOWED_TABLES", "Account, contact", "allowed_tables", frozenset({"account", "contact"})),
        ("DYNAMICS_MCP_DENIED_ACTIONS", "WinOpportunity, WhoAmI", "denied_actions", {"winopportunity", "whoami"}),
        ("DYNAMICS_MCP_TRUSTED_ACTIONS", "CloseIncident", "trusted_actions", frozenset({"closeincident"})),
        ("DYNAMICS_MCP_AUDIENCE", "api://app, App-Id", "audience", ("api://app", "App-Id")),
        ("DATAVERSE_READ_TIMEOUT", "45", "read_timeout", 45.0),
        (
            "DYNAMICS_MCP_TOOL_SCOPES",
            '{"delete_record": ["Records.Delete"]}',
            "tool_scopes",
            {"delete_record": {"Records.Delete"}},
        ),
        ("DYNAMICS_MCP_CURSOR_KEY", KEY, "cursor_key", KEY),
    ],
)
def test_each_setting_is_read_from_its_documented_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)
    found = getattr(load_settings(None), field)
    assert (found.get_secret_value() if hasattr(found, "get_secret_value") else found) == expected


def test_flags_win_over_variables_which_win_over_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = config_file(
        tmp_path / "dynamics-mcp.toml",
        url="https://file.crm.dynamics.com",
        read_only=True,
        allowed_tables=["Account", "contact"],
        denied_tables=["lead"],
        connect_timeout=5,
        proxy="http://proxy.contoso.com:8080",
        cursor_key="f" * 40,
    )
    monkeypatch.setenv("DATAVERSE_URL", "https://variable.crm.dynamics.com")
    monkeypatch.setenv("DYNAMICS_MCP_READ_ONLY", "false")
    monkeypatch.setenv("DYNAMICS_MCP_DENIED_TABLES", "systemuser, Team")

    from_file_and_variables = load_settings(config)
    with_flags = load_settings(config, url="https://flag.crm.dynamics.com", read_only=True)

    assert from_file_and_variables.url == "https://variable.crm.dynamics.com"
    assert from_file_and_variables.read_only is False
    assert from_file_and_variables.allowed_tables == {"account", "contact"}
    assert from_file_and_variables.denied_tables == {"systemuser", "team"}
    assert from_file_and_variables.connection().timeout().connect == 5
    assert from_file_and_variables.proxy == "http://proxy.contoso.com:8080"
    assert from_file_and_variables.cursor_key is not None
    assert from_file_and_variables.cursor_key.get_secret_value() == "f" * 40
    assert (with_flags.url, with_flags.read_only) == ("https://flag.crm.dynamics.com", True)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('DATAVERSE_URL = "https://contoso.crm.dynamics.com"\n', "no setting is named DATAVERSE_URL (the key is url)"),
        ("READ_ONLY = true\n", "no setting is named READ_ONLY;"),
        ("read_ony = true\n", "no setting is named read_ony;"),
        ("url = \n", "not valid TOML"),
        ('[[environments]]\nurl = "https://contoso.crm.dynamics.com"\nurl = "x"\n', "not valid TOML"),
    ],
)
def test_a_file_with_unknown_keys_or_bad_toml_is_refused_in_one_line(
    tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "dynamics-mcp.toml"
    config.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError) as raised:
        load_settings(config)
    assert str(raised.value).startswith(f"--config {config}: ")
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no such file") as raised:
        load_settings(tmp_path / "missing.toml")
    assert str(tmp_path / "missing.toml") in str(raised.value)


@pytest.mark.parametrize("key", ["", "short", "k" * 31])
def test_a_short_cursor_key_is_refused_with_an_example(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv("DYNAMICS_MCP_CURSOR_KEY", key)
    with pytest.raises(ConfigurationError) as raised:
        load_settings(None)
    message = str(raised.value)
    assert "DYNAMICS_MCP_CURSOR_KEY (cursor_key)" in message and "at least 32 characters" in message
    assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in message
    assert not key or key not in message


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"proxy": "socks4://user:hunter2@proxy.contoso.com"}, "proxy: Value error, not a proxy URL"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "SSL_CERT_FILE (ca_bundle)"),
        ({"cursor_key": "hunter2"}, "DYNAMICS_MCP_CURSOR_KEY (cursor_key)"),
    ],
)
def test_bad_connection_and_cursor_settings_in_the_file_are_named_without_secrets(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(config_file(tmp_path / "dynamics-mcp.toml", **settings))
    assert message in str(raised.value)
    assert "hunter2" not in str(raised.value)


# The clients: a forward proxy, and an https environment whose certificate only a CA made here vouches for.


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def relay(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: tuple[asyncio.StreamReader, Any]
) -> None:
    await asyncio.gather(pipe(reader, upstream[1]), pipe(upstream[0], writer))


@asynccontextmanager
async def serving(handler: Handler, context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """`handler` for each connection to a loopback port (yielded); connections still open are ended on exit."""
    tasks: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks[task] = writer
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            del tasks[task]

    server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in tasks.values():
            writer.close()  # the relay sees the end of this side and closes the other
        await asyncio.gather(*tasks)
        await server.wait_closed()


class Proxy:
    """A forward proxy: tunnels CONNECT, passes plain-HTTP requests on; remembers each request line it saw."""

    def __init__(self) -> None:
        self.request_lines: list[str] = []
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line, _, headers = head.partition(b"\r\n")
        method, target, version = line.decode().split()
        self.request_lines.append(line.decode())
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            url = urlsplit(target)
            upstream = await asyncio.open_connection(url.hostname, url.port)
            kept = [
                header for header in headers.split(b"\r\n") if header and not header.lower().startswith(b"connection:")
            ]
            # One request per connection: the origin closes after answering, so nothing unparsed follows.
            target = url.path + (f"?{url.query}" if url.query else "")
            upstream[1].write(
                f"{method} {target} {version}\r\n".encode() + b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n"
            )
        await relay(reader, writer, upstream)

    def hosts(self) -> set[str]:
        """Where the requests went: host:port of each tunnel or request."""
        return {
            target if method == "CONNECT" else urlsplit(target).netloc
            for method, target, _ in (line.split() for line in self.request_lines)
        }


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    recorder = Proxy()
    async with serving(recorder.handle) as port:
        recorder.url = f"http://127.0.0.1:{port}"
        yield recorder


def certificate_authority(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA made for this test (its certificate in a PEM file) and a server context for 127.0.0.1 it signed."""
    files = TlsFiles.ensure(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.certificate, files.key)
    return files.ca, context


def host_of(url: str) -> str:
    return urlsplit(url).netloc


async def test_the_files_proxy_ca_bundle_and_timeouts_reach_the_server_and_check(
    sandbox: Sandbox, tmp_path: Path, proxy: Proxy, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_file, context = certificate_authority(tmp_path)
    contoso = sandbox.environments["contoso"].url

    async def to_contoso(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await relay(reader, writer, await asyncio.open_connection("127.0.0.1", int(urlsplit(contoso).port or 80)))

    async with serving(to_contoso, context) as port:  # the sandbox's contoso, over TLS
        url = f"https://127.0.0.1:{port}"
        config = config_file(
            tmp_path / "dynamics-mcp.toml",
            [{"name": "contoso", "url": url, "access_token": sandbox.token()}],
            proxy=proxy.url,
            ca_bundle=ca_file,
            connect_timeout=4,
            read_timeout=33,
        )
        settings = load_settings(config)
        server = build_server(settings)
        async with Client(server) as client:
            found = structured(
                await client.call_tool("query_records", {"table": "account", "filter": "accountnumber eq 'A-1001'"})
            )
        status = await check(settings)
        assert server.settings.lifespan is not None
        async with server.settings.lifespan(server) as state:
            [environment] = await state.environments.all()
            timeout = environment.client.transport.http.timeout

    assert found["rows"][0]["name"] == "Contoso Ltd"
    assert status == 0 and f"contoso: OK {url} user=" in capsys.readouterr().out
    assert proxy.hosts() == {f"127.0.0.1:{port}"}
    assert (timeout.connect, timeout.read) == (4, 33)


async def test_sign_in_and_dataverse_requests_go_through_the_files_proxy(
    sandbox: Sandbox, tmp_path: Path, proxy: Proxy
) -> None:
    contoso = sandbox.environments["contoso"].url
    config = config_file(
        tmp_path / "dynamics-mcp.toml",
        url=contoso,
        tenant_id=str(TENANT_ID),
        client_id=APP,
        client_secret=sandbox.identity.secrets.client_secrets[APP],
        authority_host=sandbox.identity.base_url,
        ca_bundle=sandbox.ca_file,  # the sandbox's authority speaks TLS: MSAL trusts it only through this
        proxy=proxy.url,
    )
    async with Client(build_server(load_settings(config))) as client:
        found = structured(await client.call_tool("query_records", {"table": "account", "top": 1}))
    assert found["rows"]
    assert proxy.hosts() == {host_of(sandbox.identity.base_url), host_of(contoso)}


async def test_callers_tokens_are_checked_through_the_files_proxy(
    sandbox: Sandbox, tmp_path: Path, proxy: Proxy
) -> None:
    signing_in = PasswordCredential(
        PUBLIC_APP,
        "alice",
        sandbox.identity.secrets.passwords["alice"],
        Authority(sandbox.identity.base_url, str(TENANT_ID)),
        ca_bundle=str(sandbox.ca_file),
    )
    try:
        token = (await signing_in.token(f"api://{SERVER_APP}/user_impersonation")).token
    finally:
        signing_in.close()
    config = config_file(
        tmp_path / "dynamics-mcp.toml",
        tenant_id=str(TENANT_ID),
        client_id=SERVER_APP,
        authority_host=sandbox.identity.base_url,
        ca_bundle=sandbox.ca_file,
        proxy=proxy.url,
        read_timeout=33,
    )
    _, verifier = protected_resource(load_settings(config), "http://127.0.0.1:8000")
    try:
        accepted = await verifier.verify_token(token)
    finally:
        await verifier.http.aclose()
    assert accepted is not None and accepted.claims.get("oid")
    assert proxy.hosts() == {host_of(sandbox.identity.base_url)}
    assert verifier.http.timeout.read == 33


async def test_the_environments_command_signs_in_and_discovers_through_the_files_proxy(
    sandbox: Sandbox, tmp_path: Path, proxy: Proxy, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(
        tmp_path / "dynamics-mcp.toml",
        auth="password",
        username="alice",
        password=sandbox.identity.secrets.passwords["alice"],
        client_id=PUBLIC_APP,
        tenant_id=str(TENANT_ID),
        authority_host=sandbox.identity.base_url,
        ca_bundle=sandbox.ca_file,
        discovery_url=sandbox.discovery_url,
        proxy=proxy.url,
    )
    # The command runs its own event loop; the sandbox and the proxy keep serving on this one meanwhile.
    status = await anyio.to_thread.run_sync(list_environments, config)
    output = capsys.readouterr()
    assert status == 0, output.err
    listed = {line.split("\t")[1] for line in output.out.splitlines()}
    assert listed == {environment.url for environment in sandbox.environments.values()}
    assert host_of(sandbox.identity.base_url) in proxy.hosts() and host_of(sandbox.discovery_url) in proxy.hosts()
