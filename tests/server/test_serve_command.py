"""`dynamics-mcp serve` as an IDE launches it: a subprocess speaking MCP over stdio."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import anyio
import pytest
from anyio.streams.text import TextReceiveStream
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from sandbox import TENANT_ID, Sandbox
from server._cli import main
from server._data_directory import DataDirectoryLock
from server._settings import AuthMode
from tools import TOOL_NAMES

from ..auth.browser import browser_command
from ..encryption import assert_encrypted
from ..tools.support import structured, text

MODES = ["2026-07-28", "legacy"]
CLEAN = {
    name: value
    for name, value in os.environ.items()
    if not name.startswith(("DATAVERSE_", "DYNAMICS_MCP_", "AZURE_"))
    and name not in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY")  # no browser of this machine opens in a test
}


def stdio(env: dict[str, str], *arguments: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "server", "serve", *arguments], env=env)


def zero_setup(tmp_path: Path) -> dict[str, str]:
    """Nothing configured, and the user's data directory (XDG_DATA_HOME) inside the test's own directory."""
    return {**CLEAN, "XDG_DATA_HOME": str(tmp_path / "data")}


def embedded_data(tmp_path: Path) -> Path:
    return tmp_path / "data" / "dynamics-mcp" / "embedded-sandbox"


@pytest.mark.parametrize("mode", MODES)
async def test_zero_setup_serves_the_embedded_sandbox(mode: str, tmp_path: Path) -> None:
    async with Client(stdio(zero_setup(tmp_path)), mode=mode) as client:
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


async def test_serve_over_http_zero_setup_then_stop_on_sigterm(tmp_path: Path) -> None:
    """The zero-setup default over HTTP: loopback only, the embedded sandbox, stopped cleanly by SIGTERM."""
    command = [sys.executable, "-m", "server", "serve", "--transport", "http", "--port", "0"]
    async with await anyio.open_process(command, env=zero_setup(tmp_path)) as process:
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


def test_a_table_list_naming_no_table_stops_serve_with_one_line(tmp_path: Path) -> None:
    env = {**zero_setup(tmp_path), "DYNAMICS_MCP_DENIED_TABLES": "contacts, Lead, acount"}  # the sandbox's tables
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


async def test_zero_setup_keeps_its_data_between_runs_and_says_where_and_how_to_reset(tmp_path: Path) -> None:
    env, log = zero_setup(tmp_path), tmp_path / "serve.log"
    with log.open("w") as errors:
        async with Client(stdio_client(stdio(env), errlog=errors)) as client:
            listed = await client.call_tool("list_environments", {})
            created = structured(
                await client.call_tool("create_record", {"table": "account", "values": {"name": "Kept between runs"}})
            )
        async with Client(stdio_client(stdio(env), errlog=errors)) as client:
            found = structured(
                await client.call_tool("query_records", {"table": "account", "filter": "name eq 'Kept between runs'"})
            )
    said = " ".join(log.read_text().split())
    assert [row["accountid"] for row in found["rows"]] == [created["id"]]
    assert (
        f"Its data is kept between runs in {embedded_data(tmp_path)}; to start again from the demo data, stop "
        "dynamics-mcp and delete that directory." in said
    )
    environments = structured(listed)["environments"]
    assert [(environment["name"], environment.get("default")) for environment in environments] == [
        ("contoso", True),
        ("fabrikam", None),
    ]
    assert text(listed).count('"default":true') == 1


async def test_zero_setup_searches_and_a_change_token_outlives_the_session(tmp_path: Path) -> None:
    """What a new user's workflow sees over stdio: search works out of the box, and the token of one session
    (a new server process) reports the next session's change."""
    env = zero_setup(tmp_path)
    async with Client(stdio_client(stdio(env))) as client:
        found = structured(await client.call_tool("search_records", {"search": "Fabrikam", "tables": ["account"]}))
        token = structured(await client.call_tool("list_changes", {"table": "lead"}))["token"]
    async with Client(stdio_client(stdio(env))) as client:
        made = structured(await client.call_tool("create_record", {"table": "lead", "values": {"lastname": "Next"}}))
        changes = structured(await client.call_tool("list_changes", {"table": "lead", "since": token}))["changes"]
    assert found["hits"] and all(hit["table"] == "account" for hit in found["hits"])
    assert [(change["change"], change["id"]) for change in changes] == [("created", made["id"])]


async def test_tools_are_listed_before_the_sandbox_has_started_and_the_first_call_waits_for_it(
    tmp_path: Path,
) -> None:
    directory = embedded_data(tmp_path)
    Sandbox(directory).prepare()
    # The data is another process's, so this serve starts on a copy of it: a copy that waits while a writer
    # holds the database exclusively. Until the writer lets go, the sandbox cannot start.
    holder = DataDirectoryLock.acquire(directory)
    assert holder is not None
    writer = sqlite3.connect(directory / "contoso.sqlite", isolation_level=None)
    writer.execute("PRAGMA locking_mode=EXCLUSIVE")
    writer.execute("BEGIN EXCLUSIVE")
    log = tmp_path / "serve.log"
    environments: list[dict[str, Any]] = []
    try:
        with log.open("w") as errors:
            async with Client(stdio_client(stdio(zero_setup(tmp_path)), errlog=errors)) as client:
                tools = await client.list_tools()
                said_meanwhile = log.read_text()

                async def first_call() -> None:
                    environments.extend(structured(await client.call_tool("list_environments", {}))["environments"])

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(first_call)
                    writer.close()  # lets the copy, and so the sandbox, go ahead
    finally:
        writer.close()
        holder.release()
    assert len(tools.tools) == len(TOOL_NAMES)
    assert "serves a temporary copy" in said_meanwhile and "sandbox is ready" not in said_meanwhile
    assert [environment["name"] for environment in environments] == ["contoso", "fabrikam"]


async def test_two_zero_setup_servers_at_once_leave_the_kept_data_whole(tmp_path: Path) -> None:
    env, log = zero_setup(tmp_path), tmp_path / "serve.log"

    async def create(client: Client, name: str) -> str:
        values = {"table": "account", "values": {"name": name}}
        return str(structured(await client.call_tool("create_record", values))["id"])

    async def names(client: Client) -> list[str]:
        query = {"table": "account", "filter": "startswith(name, 'Made by')", "orderby": "name"}
        return [row["name"] for row in structured(await client.call_tool("query_records", query))["rows"]]

    with log.open("w") as errors:
        async with Client(stdio_client(stdio(env), errlog=errors)) as first:
            await create(first, "Made by the first")
            async with Client(stdio_client(stdio(env), errlog=errors)) as second:
                await create(second, "Made by the second")
                seen_by_second = await names(second)
            seen_by_first = await names(first)
        async with Client(stdio_client(stdio(env), errlog=errors)) as third:
            kept = await names(third)
    said = " ".join(log.read_text().split())
    assert seen_by_second == ["Made by the first", "Made by the second"]  # a copy of the first's data, and its own
    assert seen_by_first == kept == ["Made by the first"]
    assert f"Its data in {embedded_data(tmp_path)} is in use by another dynamics-mcp process (pid " in said
    assert "this one serves a temporary copy, and its changes are discarded when it stops." in said


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    """`dynamics-mcp COMMAND --help` through the real command line, as one line."""
    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"])
    assert stopped.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_check_help_names_every_sign_in_mode_and_its_variables(capsys: pytest.CaptureFixture[str]) -> None:
    described = help_of("check", capsys)
    for mode in get_args(AuthMode):
        assert f" {mode} " in described or f" {mode}," in described, mode
    for variable in (
        "DATAVERSE_URL",
        "DATAVERSE_ACCESS_TOKEN",
        "DYNAMICS_MCP_AUTH",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_CLIENT_CERTIFICATE_PASSWORD",
        "AZURE_USERNAME",
        "AZURE_PASSWORD",
        "IDENTITY_ENDPOINT",
        "DYNAMICS_MCP_USER_ASSERTION",
        "AZURE_AUTHORITY_HOST",
        "SSL_CERT_FILE",
        "DATAVERSE_DISCOVERY_URL",
    ):
        assert variable in described, variable
    assert "the embedded sandbox" in described


def test_login_help_says_which_modes_it_signs_in_with_and_what_it_reads(capsys: pytest.CaptureFixture[str]) -> None:
    described = help_of("login", capsys)
    assert "interactive in the browser" in described and "device-code a code to enter" in described
    assert "login refuses them" in described
    for variable in (
        "DYNAMICS_MCP_AUTH",
        "DATAVERSE_URL",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_USERNAME",
        "DYNAMICS_MCP_TOKEN_CACHE",
    ):
        assert variable in described, variable


def test_check_of_the_zero_setup_default_reaches_the_embedded_sandbox(tmp_path: Path) -> None:
    result = run("check", env=zero_setup(tmp_path))
    assert result.returncode == 0, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["contoso", "fabrikam"]
    assert all(" OK http://127.0.0.1:" in line for line in result.stdout.splitlines())
    assert (embedded_data(tmp_path) / "contoso.sqlite").exists()


@pytest.mark.parametrize("failure", ["wrong client secret", "wrong password, environments from discovery"])
async def test_check_explains_a_sign_in_failure_without_sending_the_user_to_check(
    sandbox: Sandbox, tmp_path: Path, failure: str
) -> None:
    env = {
        **CLEAN,
        "AZURE_AUTHORITY_HOST": sandbox.identity.base_url,
        "AZURE_TENANT_ID": str(TENANT_ID),
        "SSL_CERT_FILE": str(sandbox.ca_file),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    if failure == "wrong client secret":
        env |= {
            "DATAVERSE_URL": sandbox.environments["contoso"].url,
            "AZURE_CLIENT_ID": "c0000000-0000-4000-8000-000000000001",
            "AZURE_CLIENT_SECRET": "not-the-secret",
        }
        explanation = "The client secret is wrong"
    else:
        env |= {
            "DATAVERSE_DISCOVERY_URL": sandbox.discovery_url,
            "AZURE_CLIENT_ID": "c0000000-0000-4000-8000-000000000004",  # the sandbox's public client
            "AZURE_USERNAME": "alice@contoso.example",
            "AZURE_PASSWORD": "not-the-password",
        }
        explanation = "The user name or password is wrong"
    # Awaited: the sandbox answers on this test's event loop.
    result = await anyio.run_process([sys.executable, "-m", "server", "check"], env=env, check=False)
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 1, out + err
    assert explanation in out and "Review the sign-in settings" in out
    assert "dynamics-mcp check" not in out + err
