"""`dynamics-mcp check` and `login` in every authentication mode, as a user runs them, against the sandbox."""

from __future__ import annotations

import os
import re
import shlex
import ssl
import sys
from pathlib import Path

import anyio
import httpx2
import pytest

from sandbox import TENANT_ID, Sandbox
from server._serve_command import run_async_command

from ..auth.browser import browser_command
from ..auth.certificates import certificate_pem, make_certificate, write_pem, write_pfx
from ..encryption import assert_encrypted

APP = "c0000000-0000-4000-8000-000000000001"
SERVER_APP = "c0000000-0000-4000-8000-000000000003"
PUBLIC_APP = "c0000000-0000-4000-8000-000000000004"
CLEAN = {
    name: value
    for name, value in os.environ.items()
    if not name.startswith(("DATAVERSE_", "DYNAMICS_MCP_", "AZURE_", "IDENTITY_"))
    and name not in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY")  # no browser of this machine opens in a test
}
FAILING_BROWSER = {"BROWSER": shlex.join([sys.executable, "-c", "raise SystemExit(3)", "%s"])}


def base_env(sandbox: Sandbox, tmp_path: Path, **variables: str) -> dict[str, str]:
    return {
        **CLEAN,
        "DATAVERSE_URL": sandbox.environments["contoso"].url,
        "AZURE_AUTHORITY_HOST": sandbox.identity.base_url,
        "AZURE_TENANT_ID": str(TENANT_ID),
        "SSL_CERT_FILE": str(sandbox.ca_file),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        **variables,
    }


async def run(command: str, env: dict[str, str]) -> tuple[int, str, str]:
    result = await anyio.run_process([sys.executable, "-m", "server", command], env=env, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def expect_ok(result: tuple[int, str, str], user_id: str) -> None:
    status, out, err = result
    assert status == 0, out + err
    assert re.match(
        rf"\S+: OK http://127\.0\.0\.1:\d+ user={user_id} organization=\S+ version=9\.2\S* latency=\d+ ms", out
    )


def register(sandbox: Sandbox, certificate: object) -> None:
    sandbox.identity.secrets.register_certificate(APP, certificate_pem(certificate))  # type: ignore[arg-type]


async def test_check_with_a_static_token(sandbox: Sandbox, tmp_path: Path) -> None:
    env = base_env(sandbox, tmp_path, DATAVERSE_ACCESS_TOKEN=sandbox.token("alice"))
    expect_ok(await run("check", env), "b0000000-0000-4000-8000-000000000002")


async def test_check_with_a_client_secret(sandbox: Sandbox, tmp_path: Path) -> None:
    secret = sandbox.identity.secrets.client_secrets[APP]
    env = base_env(sandbox, tmp_path, AZURE_CLIENT_ID=APP, AZURE_CLIENT_SECRET=secret)
    expect_ok(await run("check", env), "e0000000-0000-4000-8000-000000000001")


@pytest.mark.parametrize("kind", ["pem", "pfx"])
async def test_check_with_a_certificate(sandbox: Sandbox, tmp_path: Path, kind: str) -> None:
    key, certificate = make_certificate()
    register(sandbox, certificate)
    if kind == "pem":
        path, extra = write_pem(tmp_path / "app.pem", key, certificate), {}
    else:
        path, extra = (
            write_pfx(tmp_path / "app.pfx", key, certificate, "pfx pass"),
            {"AZURE_CLIENT_CERTIFICATE_PASSWORD": "pfx pass"},
        )
    env = base_env(sandbox, tmp_path, AZURE_CLIENT_ID=APP, AZURE_CLIENT_CERTIFICATE_PATH=str(path), **extra)
    expect_ok(await run("check", env), "e0000000-0000-4000-8000-000000000001")


async def test_check_with_managed_identity(sandbox: Sandbox, tmp_path: Path) -> None:
    env = base_env(
        sandbox,
        tmp_path,
        IDENTITY_ENDPOINT=sandbox.managed_identity_endpoint,
        IDENTITY_HEADER=sandbox.identity.secrets.managed_identity_header,
    )
    expect_ok(await run("check", env), "e0000000-0000-4000-8000-000000000001")


async def test_check_with_a_password(sandbox: Sandbox, tmp_path: Path) -> None:
    env = base_env(
        sandbox,
        tmp_path,
        AZURE_CLIENT_ID=PUBLIC_APP,
        AZURE_USERNAME="bob",
        AZURE_PASSWORD=sandbox.identity.secrets.passwords["bob"],
    )
    expect_ok(await run("check", env), "b0000000-0000-4000-8000-000000000003")


async def test_check_on_behalf_of_a_user(sandbox: Sandbox, tmp_path: Path) -> None:
    user_token = sandbox.identity.user_tokens(
        sandbox.identity.secrets and __import__("sandbox").find_user("carol"),  # type: ignore[arg-type]
        __import__("sandbox._directory", fromlist=["find_application"]).find_application(PUBLIC_APP),
        f"api://{SERVER_APP}/access_as_user",
    )["access_token"]
    env = base_env(
        sandbox,
        tmp_path,
        DYNAMICS_MCP_AUTH="on-behalf-of",
        AZURE_CLIENT_ID=SERVER_APP,
        AZURE_CLIENT_SECRET=sandbox.identity.secrets.client_secrets[SERVER_APP],
        DYNAMICS_MCP_USER_ASSERTION=user_token,
    )
    expect_ok(await run("check", env), "b0000000-0000-4000-8000-000000000004")


@pytest.mark.parametrize(
    ("variables", "fallback"),
    [
        ({"DYNAMICS_MCP_AUTH": "device-code", "OPEN_BROWSER": "yes"}, False),  # asked for by name: no browser
        ({"OPEN_BROWSER": "fails"}, True),
    ],
    ids=["device-code-mode", "browser-fails"],
)
async def test_login_with_a_device_code_then_check_reuses_the_cache(
    sandbox: Sandbox, tmp_path: Path, variables: dict[str, str], fallback: bool
) -> None:
    browser = browser_command(sandbox.ca_file) if variables.pop("OPEN_BROWSER") == "yes" else FAILING_BROWSER
    env = base_env(sandbox, tmp_path, AZURE_CLIENT_ID=PUBLIC_APP, **browser, **variables)
    process = await anyio.open_process([sys.executable, "-m", "server", "login"], env=env)
    try:
        assert process.stderr is not None
        message = b""
        with anyio.fail_after(30):
            while b"enter the code" not in message:
                message += await process.stderr.receive()
        code = re.search(rb"enter the code (\w+)", message).group(1).decode()  # type: ignore[union-attr]
        async with httpx2.AsyncClient(verify=ssl.create_default_context(cafile=str(sandbox.ca_file))) as http:
            approved = await http.post(
                sandbox.identity.base_url + "/_sandbox/device/approve", json={"user_code": code, "user": "alice"}
            )
        assert approved.status_code == 204
        with anyio.fail_after(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()
    assert (b"device code instead: the web browser could not be opened" in message) is fallback
    assert b"Opening your web browser" not in message or fallback
    cache = (tmp_path / "cache" / "dynamics-mcp" / "token-cache.bin").read_bytes()
    assert_encrypted(cache)
    if not fallback:  # once is enough to show that serve and check find the user login signed in
        expect_ok(await run("check", env), "b0000000-0000-4000-8000-000000000002")


async def test_login_with_no_environment_signs_in_for_global_discovery(sandbox: Sandbox, tmp_path: Path) -> None:
    env = base_env(
        sandbox,
        tmp_path,
        DYNAMICS_MCP_AUTH="interactive",
        AZURE_CLIENT_ID=PUBLIC_APP,
        AZURE_USERNAME="alice",
        DATAVERSE_DISCOVERY_URL=sandbox.discovery_url,
        **browser_command(sandbox.ca_file),
    )
    del env["DATAVERSE_URL"]
    status, _, err = await run("login", env)
    assert status == 0, err
    assert "Signed in" in err
    status, out, err = await run("environments", env)  # the cached sign-in, no browser this time
    assert status == 0, err
    assert {line.split("\t")[1] for line in out.splitlines()} == {
        environment.url for environment in sandbox.environments.values()
    }


URL = "https://contoso.crm.dynamics.com"


@pytest.mark.parametrize(
    ("variables", "file", "message"),
    [
        ({"DATAVERSE_URL": URL, "DATAVERSE_ACCESS_TOKEN": "ready-token-value"}, "", "a ready token is configured"),
        ({}, f'[[environments]]\nurl = "{URL}"\naccess_token = "ready-token-value"\n', "a ready token is configured"),
        (
            {
                "DATAVERSE_URL": URL,
                "AZURE_TENANT_ID": str(TENANT_ID),
                "AZURE_CLIENT_ID": APP,
                "AZURE_CLIENT_SECRET": "x-secret-x",
            },
            "",
            "the client-secret mode signs in by itself",
        ),
        (
            {"DATAVERSE_URL": URL, "AZURE_CLIENT_ID": APP, "AZURE_CLIENT_CERTIFICATE_PATH": "app.pem"},
            "",
            "the certificate mode signs in by itself",
        ),
        (
            {
                "DATAVERSE_URL": URL,
                "IDENTITY_ENDPOINT": "http://127.0.0.1:9/msi/token",
                "IDENTITY_HEADER": "x-secret-x",
            },
            "",
            "the managed-identity mode signs in by itself",
        ),
        (
            {"DATAVERSE_URL": URL, "AZURE_USERNAME": "alice", "AZURE_PASSWORD": "x-secret-x"},
            "",
            "the password mode signs in by itself",
        ),
        ({"DATAVERSE_URL": URL, "DYNAMICS_MCP_AUTH": "on-behalf-of"}, "", "the on-behalf-of mode signs in by itself"),
        ({}, "", "no environment is configured, so serve uses the embedded sandbox"),
    ],
    ids=[
        "token",
        "token-in-file",
        "client-secret",
        "certificate",
        "managed-identity",
        "password",
        "on-behalf-of",
        "nothing",
    ],
)
def test_login_with_nothing_to_sign_in_to_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    variables: dict[str, str],
    file: str,
    message: str,
) -> None:
    for name in set(os.environ) - set(CLEAN):
        monkeypatch.delenv(name)
    for name, value in {"XDG_CACHE_HOME": str(tmp_path / "cache"), **variables}.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "dynamics-mcp.toml" if file else None
    if config is not None:
        config.write_text(file, encoding="utf-8")

    status = run_async_command("login", config)

    out, err = capsys.readouterr()
    assert status == 2
    assert err.startswith("dynamics-mcp: Nothing to sign in to: ") and err.count("\n") == 1
    assert message in err
    assert out == "" and "Signed in" not in err
    assert "x-secret-x" not in err and "ready-token-value" not in err


async def test_login_signs_in_in_the_browser_where_there_is_one(sandbox: Sandbox, tmp_path: Path) -> None:
    env = base_env(
        sandbox, tmp_path, AZURE_CLIENT_ID=PUBLIC_APP, AZURE_USERNAME="carol", **browser_command(sandbox.ca_file)
    )
    status, out, err = await run("login", env)
    assert status == 0, err
    assert out == ""
    assert "Opening your web browser to sign in" in err and "Signed in" in err and "device code" not in err
    cache = (tmp_path / "cache" / "dynamics-mcp" / "token-cache.bin").read_bytes()
    assert_encrypted(cache)
    expect_ok(await run("check", env), "b0000000-0000-4000-8000-000000000004")


@pytest.mark.parametrize(
    ("variables", "explanation"),
    [
        ({"AZURE_CLIENT_ID": APP, "AZURE_CLIENT_SECRET": "wrong-secret-value"}, "client secret is wrong"),
        (
            {"AZURE_CLIENT_ID": "c0000000-0000-4000-8000-00000000dead", "AZURE_CLIENT_SECRET": "x-secret-x"},
            "No app registration",
        ),
        (
            {"AZURE_CLIENT_ID": APP, "AZURE_CLIENT_SECRET": "x-secret-x", "AZURE_TENANT_ID": "nosuchtenant"},
            "tenant does not exist",
        ),
    ],
)
async def test_check_explains_sign_in_failures_without_secrets(
    sandbox: Sandbox, tmp_path: Path, variables: dict[str, str], explanation: str
) -> None:
    status, out, err = await run("check", base_env(sandbox, tmp_path, **variables))
    assert status == 1
    assert explanation in out
    assert "wrong-secret-value" not in out + err and "x-secret-x" not in out + err


async def test_check_explains_local_certificate_problems(sandbox: Sandbox, tmp_path: Path) -> None:
    key, expired = make_certificate(expired=True)
    env = base_env(
        sandbox,
        tmp_path,
        AZURE_CLIENT_ID=APP,
        AZURE_CLIENT_CERTIFICATE_PATH=str(write_pem(tmp_path / "old.pem", key, expired)),
    )
    status, _, err = await run("check", env)
    assert status == 2
    assert "expired" in err


async def test_check_says_when_an_environment_is_unreachable(sandbox: Sandbox, tmp_path: Path) -> None:
    env = base_env(sandbox, tmp_path, DATAVERSE_URL="http://127.0.0.1:9", DATAVERSE_ACCESS_TOKEN="token")
    status, out, _ = await run("check", env)
    assert status == 1
    assert "unreachable" in out
