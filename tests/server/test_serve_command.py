"""`dynamics-mcp serve` as an IDE launches it: a subprocess speaking MCP over stdio."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream
from mcp import Client, StdioServerParameters

from sandbox import TENANT_ID, Sandbox

from ..auth.browser import browser_command
from ..encryption import assert_encrypted
from ..tools.support import structured

MODES = ["2026-07-28", "legacy"]
CLEAN = {
    name: value
    for name, value in os.environ.items()
    if not name.startswith(("DATAVERSE_", "DYNAMICS_MCP_", "AZURE_"))
    and name not in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY")  # no browser of this machine opens in a test
}


def stdio(env: dict[str, str], *arguments: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "server", "serve", *arguments], env=env)


@pytest.mark.parametrize("mode", MODES)
async def test_zero_setup_serves_the_embedded_sandbox(mode: str) -> None:
    async with Client(stdio(CLEAN), mode=mode) as client:
        environments = structured(await client.call_tool("list_environments", {}))
        found = structured(
            await client.call_tool("query_records", {"table": "account", "filter": "accountnumber eq 'A-1001'"})
        )
    assert [environment["name"] for environment in environments["environments"]] == ["contoso", "fabrikam"]
    assert found["rows"][0]["name"] == "Contoso Ltd"


@pytest.mark.parametrize("mode", MODES)
async def test_an_environment_from_dataverse_url_and_access_token(sandbox: Sandbox, mode: str) -> None:
    env = {
        **CLEAN,
        "DATAVERSE_URL": sandbox.environments["fabrikam"].url,
        "DATAVERSE_ACCESS_TOKEN": sandbox.token("dave", "fabrikam"),
    }
    async with Client(stdio(env), mode=mode) as client:
        environments = structured(await client.call_tool("list_environments", {}))
        rows = structured(
            await client.call_tool("query_records", {"table": "accounts", "select": ["name", "ownerid"]})
        )["rows"]
        created = structured(
            await client.call_tool("create_record", {"table": "account", "values": {"name": "Via stdio"}})
        )
    assert environments["environments"][0]["url"] == sandbox.environments["fabrikam"].url
    assert rows and {row["ownerid"]["name"] for row in rows} == {"Dave Diaz"}
    assert created["created"] is True


async def test_interactive_mode_signs_in_in_the_browser_and_keeps_stdout_for_mcp(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {
        **CLEAN,
        "DATAVERSE_URL": sandbox.environments["contoso"].url,
        "DYNAMICS_MCP_AUTH": "interactive",
        "AZURE_AUTHORITY_HOST": sandbox.identity.base_url,
        "AZURE_TENANT_ID": str(TENANT_ID),
        "AZURE_CLIENT_ID": "c0000000-0000-4000-8000-000000000004",
        "AZURE_USERNAME": "carol@contoso.example",
        "SSL_CERT_FILE": str(sandbox.ca_file),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        # This browser prints to stdout, as Chrome does: none of it may reach the MCP client's stream.
        **browser_command(sandbox.ca_file, "--chatty"),
    }
    caplog.set_level(logging.ERROR, logger="mcp")
    async with Client(stdio(env)) as client:
        found = structured(
            await client.call_tool("query_records", {"table": "account", "filter": "accountnumber eq 'A-1001'"})
        )
        again = structured(await client.call_tool("query_records", {"table": "contact", "top": 1}))
    assert found["rows"][0]["name"] == "Contoso Ltd" and again["rows"]
    assert {record.object_id for record in sandbox.request_log.records} == {"a0000000-0000-4000-8000-000000000004"}
    assert not [record for record in caplog.records if "parse" in record.getMessage().lower()]
    assert_encrypted((tmp_path / "cache" / "dynamics-mcp" / "token-cache.bin").read_bytes())


def run(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *arguments], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"DATAVERSE_URL": "http://contoso.crm.dynamics.com"}, "must use https://"),
        (
            {"DATAVERSE_URL": "https://contoso.crm.dynamics.com", "DYNAMICS_MCP_AUTH": "client-secret"},
            "AZURE_TENANT_ID is required",
        ),
        ({"AZURE_AUTHORITY_HOST": "http://login.example"}, "must use https://"),
        ({"DYNAMICS_MCP_READ_ONLY": "perhaps"}, "DYNAMICS_MCP_READ_ONLY=true"),
        ({"DATAVERSE_READ_TIMEOUT": "-5"}, "0: no limit"),
        ({"DYNAMICS_MCP_TOOL_SCOPES": '{"drop_table": ["Records.Write"]}'}, "no tool named drop_table"),
        ({"DATAVERSE_DISCOVERY_URL": "globaldisco"}, "is not an http(s) URL"),
    ],
)
def test_configuration_errors_name_the_setting_and_leak_no_secret(variables: dict[str, str], message: str) -> None:
    secret = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.secret.value"
    token = {} if "AZURE_TENANT_ID" in message else {"DATAVERSE_ACCESS_TOKEN": secret}
    result = run("environments", env={**CLEAN, **token, **variables})
    assert result.returncode == 2
    assert message in result.stderr
    assert secret not in result.stderr + result.stdout


def test_environments_command_lists_what_the_configuration_reaches(sandbox: Sandbox) -> None:
    env = {**CLEAN, "DATAVERSE_URL": sandbox.environments["contoso"].url, "DATAVERSE_ACCESS_TOKEN": sandbox.token()}
    result = run("environments", env=env)
    assert result.returncode == 0, result.stderr
    url = sandbox.environments["contoso"].url
    assert result.stdout.splitlines() == [f"{url.removeprefix('http://')}\t{url}\t"]


async def test_serve_over_http_zero_setup_then_stop_on_sigterm() -> None:
    """The zero-setup default over HTTP: loopback only, the embedded sandbox, stopped cleanly by SIGTERM."""
    command = [sys.executable, "-m", "server", "serve", "--transport", "http", "--port", "0"]
    async with await anyio.open_process(command, env=CLEAN) as process:
        assert process.stderr is not None
        lines = TextReceiveStream(process.stderr)
        seen = ""
        with anyio.fail_after(60):
            while "Serving MCP over streamable HTTP at " not in seen:
                seen += await lines.receive()
        url = seen.split("Serving MCP over streamable HTTP at ", 1)[1].split()[0]
        async with Client(url) as client:
            environments = structured(await client.call_tool("list_environments", {}))["environments"]
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            code = await process.wait()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
    assert [environment["name"] for environment in environments] == ["contoso", "fabrikam"]
    assert code == 0


def test_a_table_list_naming_no_table_stops_serve_with_one_line() -> None:
    env = {**CLEAN, "DYNAMICS_MCP_DENIED_TABLES": "contacts, Lead, acount"}  # the zero-setup sandbox's tables
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "dynamics-mcp: DYNAMICS_MCP_DENIED_TABLES names 'acount', which is no table of contoso; "
        "the closest is 'account'."
    )
    assert "Traceback" not in done.stderr
