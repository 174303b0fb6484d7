"""Every authentication mode with real MSAL against the sandbox's identity provider over TLS."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import anyio
import httpx2
import pytest

from auth import (
    AuthError,
    Authority,
    CertificateCredential,
    ClientCertificate,
    ClientSecretCredential,
    Credential,
    DeviceCodeCredential,
    EncryptedTokenCache,
    ManagedIdentityCredential,
    OnBehalfOfCredential,
    PasswordCredential,
)
from dataverse import DataverseClient
from sandbox import Sandbox

from ..encryption import assert_encrypted
from .certificates import certificate_pem, make_certificate, write_pem, write_pfx

INTEGRATION_APP = "c0000000-0000-4000-8000-000000000001"
CredentialT = TypeVar("CredentialT", bound=Credential)
_open: list[Credential] = []


def keep(credential: CredentialT) -> CredentialT:
    """Close the credential's connections when the test ends."""
    _open.append(credential)
    return credential


@pytest.fixture(autouse=True)
def close_credentials(sandbox: Sandbox) -> Iterator[None]:
    """Torn down before the sandbox (it depends on it), so no connection outlives the server."""
    yield
    while _open:
        _open.pop().close()


MCP_SERVER_APP = "c0000000-0000-4000-8000-000000000003"
MCP_CLIENT_APP = "c0000000-0000-4000-8000-000000000004"


def authority(sandbox: Sandbox) -> Authority:
    return Authority(sandbox.identity.base_url, sandbox.authority.rsplit("/", 1)[1])


def scope(sandbox: Sandbox, environment: str = "contoso", permission: str = ".default") -> str:
    return f"{sandbox.environments[environment].url}/{permission}"


async def whoami(sandbox: Sandbox, credential: Credential, permission: str = ".default") -> str:
    async with httpx2.AsyncClient() as http:
        client = DataverseClient(
            http, sandbox.environments["contoso"].url, credential.for_scope(scope(sandbox, permission=permission))
        )
        return (await client.whoami()).user_id


def register(sandbox: Sandbox, certificate: object) -> None:
    sandbox.identity.secrets.register_certificate(INTEGRATION_APP, certificate_pem(certificate))  # type: ignore[arg-type]


async def test_client_secret(sandbox: Sandbox) -> None:
    secret = sandbox.identity.secrets.client_secrets[INTEGRATION_APP]
    credential = keep(
        ClientSecretCredential(INTEGRATION_APP, secret, authority(sandbox), ca_bundle=str(sandbox.ca_file))
    )
    assert await whoami(sandbox, credential) == "e0000000-0000-4000-8000-000000000001"  # the application user


async def test_a_wrong_secret_is_explained_without_the_secret(sandbox: Sandbox) -> None:
    credential = keep(
        ClientSecretCredential(
            INTEGRATION_APP, "not-the-secret-XYZ", authority(sandbox), ca_bundle=str(sandbox.ca_file)
        )
    )
    with pytest.raises(AuthError) as raised:
        await credential.token(scope(sandbox))
    assert "client secret is wrong" in str(raised.value)
    assert "not-the-secret-XYZ" not in str(raised.value)


@pytest.mark.parametrize("send_x5c", [False, True])
async def test_certificate_from_pem(sandbox: Sandbox, tmp_path: Path, send_x5c: bool) -> None:
    key, certificate = make_certificate()
    register(sandbox, certificate)
    loaded = ClientCertificate.load(write_pem(tmp_path / "client.pem", key, certificate))
    credential = keep(
        CertificateCredential(
            INTEGRATION_APP, loaded, authority(sandbox), send_x5c=send_x5c, ca_bundle=str(sandbox.ca_file)
        )
    )
    assert await whoami(sandbox, credential) == "e0000000-0000-4000-8000-000000000001"


@pytest.mark.parametrize("kind", ["pfx", "encrypted pem"])
async def test_certificate_with_a_passphrase(sandbox: Sandbox, tmp_path: Path, kind: str) -> None:
    key, certificate = make_certificate()
    register(sandbox, certificate)
    path = (
        write_pfx(tmp_path / "client.pfx", key, certificate, "s3cret pass")
        if kind == "pfx"
        else write_pem(tmp_path / "client.pem", key, certificate, "s3cret pass")
    )
    credential = keep(
        CertificateCredential(
            INTEGRATION_APP,
            ClientCertificate.load(path, "s3cret pass"),
            authority(sandbox),
            ca_bundle=str(sandbox.ca_file),
        )
    )
    assert await whoami(sandbox, credential)


async def test_an_unregistered_certificate_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    key, certificate = make_certificate()
    loaded = ClientCertificate.load(write_pem(tmp_path / "client.pem", key, certificate))
    credential = keep(
        CertificateCredential(INTEGRATION_APP, loaded, authority(sandbox), ca_bundle=str(sandbox.ca_file))
    )
    with pytest.raises(AuthError) as raised:
        await credential.token(scope(sandbox))
    assert "certificate is not accepted" in str(raised.value)


async def test_a_tampered_assertion_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    key, certificate = make_certificate()
    register(sandbox, certificate)
    loaded = ClientCertificate.load(write_pem(tmp_path / "client.pem", key, certificate))
    header, payload, signature = loaded.assertion(INTEGRATION_APP, authority(sandbox).token_endpoint).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["exp"] += 86400
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    async with httpx2.AsyncClient(verify=ssl.create_default_context(cafile=str(sandbox.ca_file))) as http:
        response = await http.post(
            authority(sandbox).token_endpoint,
            data={
                "grant_type": "client_credentials",
                "client_id": INTEGRATION_APP,
                "scope": scope(sandbox),
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": f"{header}.{forged}.{signature}",
            },
        )
    assert response.status_code == 401
    assert response.json()["error_codes"] == [700027]


async def test_managed_identity(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", sandbox.managed_identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", sandbox.identity.secrets.managed_identity_header)
    assert await whoami(sandbox, keep(ManagedIdentityCredential())) == "e0000000-0000-4000-8000-000000000001"


async def test_password(sandbox: Sandbox) -> None:
    password = sandbox.identity.secrets.passwords["alice"]
    credential = keep(
        PasswordCredential(
            MCP_CLIENT_APP, "alice@contoso.example", password, authority(sandbox), ca_bundle=str(sandbox.ca_file)
        )
    )
    assert await whoami(sandbox, credential, "user_impersonation") == "b0000000-0000-4000-8000-000000000002"
    wrong = keep(
        PasswordCredential(
            MCP_CLIENT_APP, "alice@contoso.example", "nope", authority(sandbox), ca_bundle=str(sandbox.ca_file)
        )
    )
    with pytest.raises(AuthError, match="user name or password is wrong"):
        await wrong.token(scope(sandbox, permission="user_impersonation"))


async def test_device_code_then_silent_reuse_from_the_encrypted_cache(sandbox: Sandbox, tmp_path: Path) -> None:
    prompts: list[str] = []

    def approve(message: str) -> None:
        prompts.append(message)
        user_code = message.rsplit("enter the code ", 1)[1].split()[0]
        httpx2.post(
            sandbox.identity.base_url + "/_sandbox/device/approve",
            json={"user_code": user_code, "user": "bob"},
            verify=ssl.create_default_context(cafile=str(sandbox.ca_file)),
        ).raise_for_status()

    cache = EncryptedTokenCache(tmp_path / "cache.bin", tmp_path / "cache.key")
    first = keep(
        DeviceCodeCredential(
            MCP_CLIENT_APP,
            authority(sandbox),
            cache=cache.cache,
            prompt=approve,
            on_cache_change=cache.save,
            ca_bundle=str(sandbox.ca_file),
        )
    )
    assert await whoami(sandbox, first, "user_impersonation") == "b0000000-0000-4000-8000-000000000003"
    assert len(prompts) == 1
    stored = (tmp_path / "cache.bin").read_bytes()
    assert_encrypted(stored)
    assert (tmp_path / "cache.key").stat().st_mode & 0o077 == 0
    restarted = EncryptedTokenCache(tmp_path / "cache.bin", tmp_path / "cache.key")
    silent = keep(
        DeviceCodeCredential(
            MCP_CLIENT_APP, authority(sandbox), cache=restarted.cache, terminal=False, ca_bundle=str(sandbox.ca_file)
        )
    )
    assert await whoami(sandbox, silent, "user_impersonation") == "b0000000-0000-4000-8000-000000000003"
    with pytest.raises(AuthError, match="cannot be decrypted"):
        EncryptedTokenCache(tmp_path / "cache.bin", key=b"0" * 43 + b"=")


async def test_on_behalf_of(sandbox: Sandbox) -> None:
    password = sandbox.identity.secrets.passwords["alice"]
    user = keep(
        PasswordCredential(MCP_CLIENT_APP, "alice", password, authority(sandbox), ca_bundle=str(sandbox.ca_file))
    )
    user_token = await user.token(f"api://{MCP_SERVER_APP}/access_as_user")
    server_secret = sandbox.identity.secrets.client_secrets[MCP_SERVER_APP]
    credential = keep(
        OnBehalfOfCredential(
            MCP_SERVER_APP, server_secret, authority(sandbox), user_token.token, ca_bundle=str(sandbox.ca_file)
        )
    )
    assert await whoami(sandbox, credential, "user_impersonation") == "b0000000-0000-4000-8000-000000000002"
    foreign = keep(
        OnBehalfOfCredential(
            MCP_SERVER_APP, server_secret, authority(sandbox), sandbox.token("alice"), ca_bundle=str(sandbox.ca_file)
        )
    )
    with pytest.raises(AuthError, match="on their behalf"):
        await foreign.token(scope(sandbox, permission="user_impersonation"))


async def test_concurrent_cold_requests_make_one_identity_provider_call(sandbox: Sandbox) -> None:
    secret = sandbox.identity.secrets.client_secrets[INTEGRATION_APP]
    credential = keep(
        ClientSecretCredential(INTEGRATION_APP, secret, authority(sandbox), ca_bundle=str(sandbox.ca_file))
    )
    tokens = []

    async def one() -> None:
        tokens.append(await credential.token(scope(sandbox)))

    before = sandbox.identity.requests
    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(one)
    assert sandbox.identity.requests - before == 1
    assert len({token.token for token in tokens}) == 1
