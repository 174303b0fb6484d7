"""Signing in in the browser: real MSAL, the loopback receiver and the sandbox's identity provider over TLS.

The browser is the one part that cannot run here; `SandboxBrowser` does what a browser does with the sign-in
page (see browser.py). Every wait is bounded (the sign-in timeout, the browser's request timeouts).
"""

from __future__ import annotations

import base64
import hashlib
import re
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from auth import AuthError, Authority, Browser, EncryptedTokenCache, InteractiveCredential
from dataverse import DataverseClient
from sandbox import Sandbox

from ..encryption import assert_encrypted
from .browser import SandboxBrowser

PUBLIC_APP = "c0000000-0000-4000-8000-000000000004"
ALICE = "b0000000-0000-4000-8000-000000000002"
BOB = "b0000000-0000-4000-8000-000000000003"


@pytest.fixture
async def credentials(sandbox: Sandbox) -> AsyncIterator[list[InteractiveCredential]]:
    """Credentials a test makes, closed before the sandbox stops (this fixture depends on it)."""
    made: list[InteractiveCredential] = []
    yield made
    for credential in made:
        credential.close()


def scope(sandbox: Sandbox) -> str:
    return f"{sandbox.environments['contoso'].url}/user_impersonation"


def make(
    sandbox: Sandbox,
    credentials: list[InteractiveCredential],
    browser: Browser | None,
    cache: EncryptedTokenCache | None = None,
    **options: Any,
) -> InteractiveCredential:
    credential = InteractiveCredential(
        PUBLIC_APP,
        Authority(sandbox.identity.base_url, sandbox.authority.rsplit("/", 1)[1]),
        find_browser=lambda: browser,
        cache=cache.cache if cache else None,
        on_cache_change=cache.save if cache else None,
        ca_bundle=str(sandbox.ca_file),
        timeout=options.pop("timeout", 10),
        prompt=options.pop("prompt", lambda message: None),
        **options,
    )
    credentials.append(credential)
    return credential


async def whoami(sandbox: Sandbox, credential: InteractiveCredential) -> str:
    async with httpx2.AsyncClient(timeout=10) as http:
        client = DataverseClient(http, sandbox.environments["contoso"].url, credential.for_scope(scope(sandbox)))
        return (await client.whoami()).user_id


async def test_a_browser_sign_in_reaches_dataverse_and_a_restart_needs_no_browser(
    sandbox: Sandbox, credentials: list[InteractiveCredential], tmp_path: Path
) -> None:
    browser = SandboxBrowser(sandbox.ca_file)
    cache = EncryptedTokenCache(tmp_path / "cache.bin", tmp_path / "cache.key")
    first = make(sandbox, credentials, browser, cache, login_hint="alice@contoso.example")
    assert await whoami(sandbox, first) == ALICE
    assert len(browser.opened) == 1 and "Signed in to dynamics-mcp" in browser.receiver_pages[0]
    stored = (tmp_path / "cache.bin").read_bytes()
    assert_encrypted(stored)
    assert browser.answers[0]["code"].encode() not in stored

    restarted = make(
        sandbox,
        credentials,
        None,
        EncryptedTokenCache(tmp_path / "cache.bin", tmp_path / "cache.key"),
        terminal=False,  # as in `serve`: no browser, no device code, only the cache
    )
    token = await restarted.token(scope(sandbox))
    assert await whoami(sandbox, restarted) == ALICE
    refreshed = await restarted.token(scope(sandbox), force_refresh=True)  # the refresh token, silently
    assert refreshed.token != token.token
    assert len(browser.opened) == 1


async def test_the_configured_browser_user_signs_in_without_a_hint(
    sandbox: Sandbox, credentials: list[InteractiveCredential]
) -> None:
    sandbox.identity.set_browser_user("bob")
    assert await whoami(sandbox, make(sandbox, credentials, SandboxBrowser(sandbox.ca_file))) == BOB


def other_challenge(url: str) -> str:
    forged = base64.urlsafe_b64encode(hashlib.sha256(b"an attacker's verifier").digest()).rstrip(b"=").decode()
    return re.sub(r"code_challenge=[^&]+", f"code_challenge={forged}", url)


def loopback_ip(url: str) -> str:
    return url.replace("redirect_uri=http%3A%2F%2Flocalhost", "redirect_uri=http%3A%2F%2F127.0.0.1")


@pytest.mark.parametrize(
    ("rewrite_url", "login_hint", "explanation"),
    [
        (other_challenge, "alice", "AADSTS501481: The sign-in response does not belong to this sign-in"),
        (loopback_ip, "alice", "AADSTS500112: The sign-in response came back to another address"),
        (lambda url: url, "mallory@contoso.example", "AADSTS50034: The account does not exist in the tenant"),
    ],
    ids=["pkce-mismatch", "other-redirect-uri", "unknown-user"],
)
async def test_a_sign_in_that_is_tampered_with_or_refused_fails_without_a_secret(
    sandbox: Sandbox,
    credentials: list[InteractiveCredential],
    rewrite_url: Callable[[str], str],
    login_hint: str,
    explanation: str,
) -> None:
    browser = SandboxBrowser(sandbox.ca_file, rewrite_url=rewrite_url)
    credential = make(sandbox, credentials, browser, login_hint=login_hint)
    with pytest.raises(AuthError) as raised:
        await credential.token(scope(sandbox))
    message = str(raised.value)
    assert explanation in message
    assert all(value not in message for answer in browser.answers for value in answer.values() if len(value) > 20)
    assert "code_challenge" not in message and "eyJ" not in message


async def test_a_replayed_authorization_code_is_refused(
    sandbox: Sandbox, credentials: list[InteractiveCredential]
) -> None:
    first = SandboxBrowser(sandbox.ca_file)
    await make(sandbox, credentials, first, login_hint="alice").token(scope(sandbox))
    used_code = first.answers[0]["code"]
    replaying = SandboxBrowser(sandbox.ca_file, rewrite_answer=lambda answer: {**answer, "code": used_code})
    with pytest.raises(AuthError, match="AADSTS54005: The authorization code was already used") as raised:
        await make(sandbox, credentials, replaying, login_hint="alice").token(scope(sandbox))
    assert used_code not in str(raised.value)


async def test_a_cancelled_sign_in_says_so(sandbox: Sandbox, credentials: list[InteractiveCredential]) -> None:
    sandbox.identity.set_browser_user(None)
    browser = SandboxBrowser(sandbox.ca_file)
    with pytest.raises(AuthError, match="AADSTS65004: The sign-in was cancelled"):
        await make(sandbox, credentials, browser).token(scope(sandbox))
    assert "Sign-in failed: AADSTS65004" in browser.receiver_pages[0]


async def test_an_answer_for_another_sign_in_is_ignored(
    sandbox: Sandbox, credentials: list[InteractiveCredential]
) -> None:
    forged = SandboxBrowser(sandbox.ca_file, rewrite_answer=lambda answer: {**answer, "state": "someone-elses"})
    with pytest.raises(AuthError, match=r"did not finish within 0\.5 seconds"):
        await make(sandbox, credentials, forged, login_hint="alice", timeout=0.5).token(scope(sandbox))
    assert "not for the sign-in in progress" in forged.receiver_pages[0]


class SilentBrowser:
    """Opens the page and then nothing happens: the person walked away."""

    def __init__(self) -> None:
        self.opened = 0

    def open(self, url: str) -> bool:
        self.opened += 1
        return True


async def test_a_sign_in_nobody_finishes_times_out(sandbox: Sandbox, credentials: list[InteractiveCredential]) -> None:
    browser = SilentBrowser()
    with pytest.raises(AuthError, match=r"did not finish within 0\.2 seconds; run `dynamics-mcp login`"):
        await make(sandbox, credentials, browser, timeout=0.2).token(scope(sandbox))
    assert browser.opened == 1


class BrokenBrowser:
    def open(self, url: str) -> bool:
        return False


@pytest.mark.parametrize(
    ("browser", "reason"),
    [(None, "no web browser can be opened here"), (BrokenBrowser(), "the web browser could not be opened")],
    ids=["no-browser", "browser-fails"],
)
async def test_without_a_browser_a_person_at_a_terminal_gets_a_device_code(
    sandbox: Sandbox, credentials: list[InteractiveCredential], browser: Browser | None, reason: str
) -> None:
    prompts: list[str] = []

    def approve(message: str) -> None:
        prompts.append(message)
        if "enter the code " in message:
            user_code = message.rsplit("enter the code ", 1)[1].split()[0]
            httpx2.post(
                sandbox.identity.base_url + "/_sandbox/device/approve",
                json={"user_code": user_code, "user": "bob"},
                verify=ssl.create_default_context(cafile=str(sandbox.ca_file)),
                timeout=10,
            ).raise_for_status()

    assert await whoami(sandbox, make(sandbox, credentials, browser, prompt=approve)) == BOB
    assert any(message == f"Signing in with a device code instead: {reason}." for message in prompts)


async def test_in_serve_a_missing_browser_means_run_login(
    sandbox: Sandbox, credentials: list[InteractiveCredential]
) -> None:
    credential = make(sandbox, credentials, None, terminal=False)
    with pytest.raises(AuthError, match=r"no web browser can be opened here: run `dynamics-mcp login` first"):
        await credential.token(scope(sandbox))


async def test_a_linux_machine_without_a_desktop_has_no_browser_to_open(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    credential = InteractiveCredential(
        PUBLIC_APP,
        Authority(sandbox.identity.base_url, sandbox.authority.rsplit("/", 1)[1]),
        terminal=False,
        ca_bundle=str(sandbox.ca_file),
    )
    try:
        with pytest.raises(AuthError, match="no web browser can be opened here"):
            await credential.token(scope(sandbox))
    finally:
        credential.close()
