"""`dynamics-mcp sandbox` and `dynamics-mcp sandbox token` as a user runs them, in a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

COMMAND = [sys.executable, "-m", "server"]


@pytest.fixture
def running_sandbox(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], list[str]]]:
    data = tmp_path / "data"
    process = subprocess.Popen(
        [*COMMAND, "sandbox", "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    lines: list[str] = []
    environments: dict[str, str] = {}
    try:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("environment "):
                _, name, url = line.split()
                environments[name] = url
            if line.startswith("token:"):
                break
        assert environments, f"no environment printed; stderr: {process.stderr.read() if process.stderr else ''}"
        yield data, environments, lines
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


def token(data: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "sandbox", "token", "--data", str(data), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sandbox_prints_its_endpoints_and_its_tokens_work(
    running_sandbox: tuple[Path, dict[str, str], list[str]],
) -> None:
    data, environments, lines = running_sandbox
    assert set(environments) == {"contoso", "fabrikam"}
    assert all(url.startswith("http://127.0.0.1:") for url in environments.values())
    assert any(line.startswith("discovery http://127.0.0.1:") for line in lines)
    issued = token(data, "--user", "alice")
    assert issued.returncode == 0, issued.stderr
    headers = {"Authorization": f"Bearer {issued.stdout.strip()}", "Accept": "application/json"}
    response = httpx2.get(environments["contoso"] + "/api/data/v9.2/accounts?$select=name&$top=3", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"].endswith("/api/data/v9.2/$metadata#accounts(name)")
    assert len(body["value"]) == 3
    assert all(set(row) == {"@odata.etag", "name", "accountid"} for row in body["value"])
    metadata = httpx2.get(
        environments["contoso"] + "/api/data/v9.2/EntityDefinitions(LogicalName='account')?$expand=Attributes",
        headers=headers,
    )
    assert metadata.status_code == 200
    assert len(metadata.json()["Attributes"]) == 248


def test_token_for_another_environment_is_refused_here(
    running_sandbox: tuple[Path, dict[str, str], list[str]],
) -> None:
    data, environments, _ = running_sandbox
    issued = token(data, "--user", "admin", "--environment", "fabrikam")
    headers = {"Authorization": f"Bearer {issued.stdout.strip()}"}
    assert httpx2.get(environments["fabrikam"] + "/api/data/v9.2/WhoAmI", headers=headers).status_code == 200
    assert httpx2.get(environments["contoso"] + "/api/data/v9.2/WhoAmI", headers=headers).status_code == 401


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--user", "mallory"], "no sandbox user 'mallory'"),
        (["--environment", "nowhere"], "no environment 'nowhere'"),
    ],
)
def test_token_command_explains_bad_arguments(
    running_sandbox: tuple[Path, dict[str, str], list[str]], arguments: list[str], message: str
) -> None:
    issued = token(running_sandbox[0], *arguments)
    assert issued.returncode == 2
    assert message in issued.stderr
    assert issued.stdout == ""


def test_token_command_without_a_sandbox_says_how_to_start_one(tmp_path: Path) -> None:
    issued = token(tmp_path / "empty")
    assert issued.returncode == 2
    assert "dynamics-mcp sandbox --data" in issued.stderr
