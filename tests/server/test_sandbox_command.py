"""`dynamics-mcp sandbox` and `dynamics-mcp sandbox token` as a user runs them, in a real process."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from sandbox import TENANT_ID, USERS, User
from server._cli import main

ROOT = Path(__file__).resolve().parents[2]
BASH = shutil.which("bash") or "bash"  # the documentation's commands are for a POSIX shell

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


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive ports that are free now on loopback."""
    for _ in range(200):
        first = random.randrange(20000, 60000)
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return first
    raise RuntimeError(f"no {count} consecutive free ports")


CLEAN = {
    name: value
    for name, value in os.environ.items()
    if not name.startswith(("DATAVERSE_", "DYNAMICS_MCP_", "AZURE_", "IDENTITY_", "SSL_CERT_"))
}


@contextlib.contextmanager
def started(command: str, *, cwd: Path, until: str, stream: str = "stdout") -> Iterator[list[str]]:
    """`command` run by bash in a process group of its own, once a line of `stream` holds `until`."""
    process = subprocess.Popen(
        [BASH, "-c", command],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**CLEAN, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        output = process.stdout if stream == "stdout" else process.stderr
        assert output is not None
        for line in output:
            lines.append(line.rstrip("\n"))
            if until in line:
                break
        assert lines and until in lines[-1], f"{command!r} stopped: " + "\n".join(lines)
        yield lines
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group may have ended already
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe:
                pipe.close()


def help_text(*arguments: str, capsys: pytest.CaptureFixture[str]) -> str:
    """What `dynamics-mcp ... --help` prints, as one line (argparse wraps to the terminal's width)."""
    with pytest.raises(SystemExit) as stopped:
        main([*arguments, "--help"])
    assert stopped.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_sandbox_help_describes_each_port_as_the_sandbox_serves_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    described = help_text("sandbox", capsys=capsys)
    first = consecutive_free_ports(4)
    command = f"{shlex.join(COMMAND)} sandbox --data {shlex.quote(str(tmp_path / 'data'))} --port {first}"
    with started(command, cwd=tmp_path, until="token:") as lines:
        printed = dict(line.split(" ", 1) for line in lines)
        environments = dict(line.split()[1:] for line in lines if line.startswith("environment "))
        token = subprocess.run(
            [*COMMAND, "sandbox", "token", "--data", str(tmp_path / "data"), "--environment", "discovery"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{first}"
        discovery = httpx2.get(f"{base}/api/discovery/v2.0/Instances", headers=headers)
        requests = httpx2.get(f"{base}/_sandbox/requests")
        faults = httpx2.get(f"{base}/_sandbox/faults")
        managed_identity = httpx2.get(f"{base}/msi/token?resource=x&api-version=2019-08-01")
        who = {
            name: httpx2.get(f"http://127.0.0.1:{first + offset}/api/data/v9.2/WhoAmI").status_code
            for offset, name in ((1, "contoso"), (2, "fabrikam"))
        }
        tls = ssl.create_default_context(cafile=printed["ca"])
        tenant = printed["authority"].rsplit("/", 1)[1]
        openid = httpx2.get(f"https://127.0.0.1:{first + 3}/{tenant}/v2.0/.well-known/openid-configuration", verify=tls)
    assert "N Global Discovery (/api/discovery/v2.0/Instances), the managed-identity endpoint (/msi/token)" in described
    assert "fault injection (/_sandbox/faults) and the request log (/_sandbox/requests)" in described
    assert "N+1 environment contoso: its Web API" in described and "N+2 environment fabrikam" in described
    assert "N+3 the identity provider" in described and "over TLS" in described
    assert printed["discovery"] == base and discovery.status_code == 200
    assert requests.status_code == 200 and faults.status_code == 200
    assert managed_identity.status_code == 401  # the endpoint, refusing a request without its secret header
    assert environments == {"contoso": f"http://127.0.0.1:{first + 1}", "fabrikam": f"http://127.0.0.1:{first + 2}"}
    assert who == {"contoso": 401, "fabrikam": 401}  # a Web API, asking for a token
    assert printed["authority"] == f"https://127.0.0.1:{first + 3}/{TENANT_ID}"
    assert openid.status_code == 200 and openid.json()["issuer"] == f"{printed['authority']}/v2.0"


def roles_of(user: User) -> str:
    """What the help says a user may do, from the sandbox's own directory."""
    if not user.roles:
        return "no role in any environment"
    (role,) = set(user.roles.values())
    where = f"{role} in {' and '.join(user.roles)}"
    return where if user.owns_seed_data else f"{where}, owning none of the demo rows"


def test_token_help_names_every_user_of_the_sandbox_and_their_role(capsys: pytest.CaptureFixture[str]) -> None:
    described = help_text("sandbox", "token", capsys=capsys)
    groups: dict[str, list[str]] = {}
    for user in USERS:
        groups.setdefault(roles_of(user), []).append(user.name)
    for roles, names in groups.items():
        assert f"{', '.join(names)} ({roles})" in described
    listed = described.split("who the token is for (default: admin): ", 1)[1].split(" --environment", 1)[0]
    named = {name for group in listed.split("; ") for name in group.split(" (", 1)[0].split(", ")}
    assert named == {user.name for user in USERS}


def test_a_second_sandbox_on_the_same_data_is_refused_and_says_why(
    running_sandbox: tuple[Path, dict[str, str], list[str]],
) -> None:
    data = running_sandbox[0]
    second = subprocess.run(
        [*COMMAND, "sandbox", "--data", str(data)], capture_output=True, text=True, timeout=60, check=False
    )
    assert second.returncode == 2
    assert f"is serving {data}: stop it, or give this sandbox another directory with --data" in second.stderr
    assert second.stdout == ""


def test_sandbox_prints_what_per_user_sign_in_needs(running_sandbox: tuple[Path, dict[str, str], list[str]]) -> None:
    data, _, lines = running_sandbox
    printed = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines}
    assert printed["tenant"] == str(TENANT_ID)
    assert printed["authority"].endswith(f"/{TENANT_ID}")
    assert Path(printed["ca"]) == data / "ca.pem" and Path(printed["ca"]).exists()
    server_app = printed["mcp-server"].split()[1].rstrip(":")
    secrets_file = Path(printed["mcp-server"].rsplit(" in ", 1)[1])
    assert server_app == "c0000000-0000-4000-8000-000000000003"
    assert json.loads(secrets_file.read_text())["client_secrets"][server_app]
    assert printed["mcp-client"].split()[1].rstrip(":") == "c0000000-0000-4000-8000-000000000004"
    assert lines[-1].startswith("token:")  # what scripts wait for: still the last line


def doc_section(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def code_blocks(section: str, language: str) -> list[str]:
    return [textwrap.dedent(block) for block in re.findall(rf"```{language}\n(.*?)\n *```", section, re.DOTALL)]


def test_trying_per_user_sign_in_locally_as_the_deployment_guide_says(tmp_path: Path) -> None:
    """docs/deployment.md, "Trying it locally": its commands and script, run as written on other ports."""
    section = doc_section(ROOT / "docs" / "deployment.md", "## Trying it locally")
    sandbox_command, serve_commands, caller_commands = code_blocks(section, "sh")
    (script,) = code_blocks(section, "python")
    first, port = consecutive_free_ports(4), consecutive_free_ports(1)
    ports = {"7000": first, "7001": first + 1, "7002": first + 2, "7003": first + 3, "8000": port}

    def as_run_here(commands: str) -> str:
        commands = re.sub(r"(?<=[: ])(7000|7001|7002|7003|8000)\b", lambda found: str(ports[found[1]]), commands)
        commands = re.sub(r"\bdynamics-mcp\b", shlex.join(COMMAND), commands)
        return re.sub(r"(?m)(?<=[\s(])python\b", shlex.quote(sys.executable), commands)

    (tmp_path / "try_it.py").write_text(as_run_here(script), encoding="utf-8")
    assert f"tenant is `{TENANT_ID}`" in section
    with (
        started(as_run_here(sandbox_command), cwd=tmp_path, until="token:"),
        started(as_run_here(serve_commands), cwd=tmp_path, until="Serving MCP over streamable HTTP", stream="stderr"),
    ):
        caller = subprocess.run(
            [BASH, "-c", as_run_here(caller_commands)],
            cwd=tmp_path,
            env=CLEAN,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        reached = httpx2.get(f"http://127.0.0.1:{first}/_sandbox/requests").json()
    assert caller.returncode == 0, caller.stderr
    owners = {line.rsplit(" owned by ", 1)[1] for line in caller.stdout.splitlines()}
    assert owners == {"Alice Anders"}
    dataverse = [record for record in reached if record["site"] == "contoso"]
    assert dataverse and {record["client_id"] for record in dataverse} == {"c0000000-0000-4000-8000-000000000003"}
    assert {record["object_id"] for record in dataverse} == {"a0000000-0000-4000-8000-000000000002"}  # alice
