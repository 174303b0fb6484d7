"""The identity provider's authorization endpoint and the authorization-code grant, spoken over TLS as MSAL does."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import jwt
import pytest

from sandbox import Sandbox

PUBLIC_APP = "c0000000-0000-4000-8000-000000000004"
REDIRECT_URI = "http://localhost:8400"
ALICE_OBJECT_ID = "a0000000-0000-4000-8000-000000000002"


@pytest.fixture
async def idp(sandbox: Sandbox) -> AsyncIterator[httpx2.AsyncClient]:
    """A client of the identity provider that trusts the sandbox's CA and follows no redirect (a test reads them)."""
    context = ssl.create_default_context(cafile=str(sandbox.ca_file))
    async with httpx2.AsyncClient(base_url=sandbox.authority, verify=context, timeout=10) as client:
        yield client


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def scope(sandbox: Sandbox) -> str:
    return f"openid profile offline_access {sandbox.environments['contoso'].url}/user_impersonation"


async def authorize(idp: httpx2.AsyncClient, sandbox: Sandbox, **params: str) -> httpx2.Response:
    query = {
        "client_id": PUBLIC_APP,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": scope(sandbox),
        "state": "state-123",
        **params,
    }
    return await idp.get("/oauth2/v2.0/authorize", params=query)


def answer(response: httpx2.Response) -> dict[str, str]:
    """The authorization response carried by a redirect to the app."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return dict(parse_qsl(urlsplit(location).query))


async def code_for(idp: httpx2.AsyncClient, sandbox: Sandbox, verifier: str, **params: str) -> str:
    response = await authorize(
        idp, sandbox, code_challenge=challenge_of(verifier), code_challenge_method="S256", **params
    )
    return answer(response)["code"]


async def redeem(idp: httpx2.AsyncClient, sandbox: Sandbox, code: str, verifier: str, **form: str) -> httpx2.Response:
    data = {
        "grant_type": "authorization_code",
        "client_id": PUBLIC_APP,
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        "scope": scope(sandbox),
        **form,
    }
    return await idp.post("/oauth2/v2.0/token", data=data)


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


async def test_the_openid_configuration_names_the_authorization_endpoint(
    sandbox: Sandbox, idp: httpx2.AsyncClient
) -> None:
    configuration = (await idp.get("/v2.0/.well-known/openid-configuration")).json()
    assert configuration["authorization_endpoint"] == f"{sandbox.authority}/oauth2/v2.0/authorize"
    assert "form_post" in configuration["response_modes_supported"]


async def test_the_hinted_user_signs_in_and_the_code_buys_their_tokens(
    sandbox: Sandbox, idp: httpx2.AsyncClient, http: httpx2.AsyncClient
) -> None:
    verifier = secrets.token_urlsafe(48)
    response = await authorize(
        idp,
        sandbox,
        login_hint="alice@contoso.example",
        nonce="nonce-1",
        code_challenge=challenge_of(verifier),
        code_challenge_method="S256",
    )
    returned = answer(response)
    assert returned["state"] == "state-123"
    tokens = (await redeem(idp, sandbox, returned["code"], verifier)).json()
    access = claims(tokens["access_token"])
    assert access["oid"] == ALICE_OBJECT_ID and access["scp"] == "user_impersonation"
    assert access["aud"] == sandbox.environments["contoso"].url
    assert claims(tokens["id_token"])["nonce"] == "nonce-1"
    assert tokens["refresh_token"]
    whoami = await http.get(
        f"{sandbox.environments['contoso'].url}/api/data/v9.2/WhoAmI",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert whoami.json()["UserId"] == "b0000000-0000-4000-8000-000000000002"


async def test_plain_pkce_and_a_127_0_0_1_redirect_on_any_port_are_accepted(
    sandbox: Sandbox, idp: httpx2.AsyncClient
) -> None:
    verifier = secrets.token_urlsafe(48)
    redirect = "http://127.0.0.1:61234"
    response = await authorize(idp, sandbox, redirect_uri=redirect, code_challenge=verifier)
    assert response.headers["location"].startswith(redirect + "?code=")
    code = dict(parse_qsl(urlsplit(response.headers["location"]).query))["code"]
    redeemed = await redeem(idp, sandbox, code, verifier, redirect_uri=redirect)
    assert redeemed.status_code == 200 and redeemed.json()["access_token"]


async def test_form_post_answers_with_a_page_that_posts_the_code_to_the_app(
    sandbox: Sandbox, idp: httpx2.AsyncClient
) -> None:
    response = await authorize(idp, sandbox, response_mode="form_post", login_hint="bob")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    form = re.search(r'<form method="POST" name="hiddenform" action="([^"]+)">', response.text)
    assert form is not None and html.unescape(form.group(1)) == REDIRECT_URI
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"/>', response.text))
    assert set(fields) == {"code", "state"} and fields["state"] == "state-123"
    assert "document.forms[0].submit()" in response.text


async def test_without_a_hint_the_configured_browser_user_signs_in_or_cancels(
    sandbox: Sandbox, idp: httpx2.AsyncClient
) -> None:
    assert (await idp.post(sandbox.identity.base_url + "/_sandbox/signin", json={"user": "bob"})).status_code == 204
    verifier = secrets.token_urlsafe(48)
    tokens = (await redeem(idp, sandbox, await code_for(idp, sandbox, verifier), verifier)).json()
    assert claims(tokens["access_token"])["upn"] == "bob@contoso.example"
    assert (await idp.post(sandbox.identity.base_url + "/_sandbox/signin", json={"user": None})).status_code == 204
    declined = answer(await authorize(idp, sandbox))
    assert declined["error"] == "access_denied" and declined["error_description"].startswith("AADSTS65004:")
    assert declined["state"] == "state-123"
    unknown = await idp.post(sandbox.identity.base_url + "/_sandbox/signin", json={"user": "mallory"})
    assert unknown.status_code == 400


# Each case runs against one sandbox: starting one per case would cost more than the cases themselves.
REFUSED_SIGN_INS: list[tuple[dict[str, str], str, int]] = [
    ({"login_hint": "mallory@contoso.example"}, "access_denied", 50034),
    ({"login_hint": "integration-app"}, "access_denied", 50034),
    ({"prompt": "none"}, "login_required", 50058),
    ({"scope": "openid profile"}, "invalid_scope", 70011),
    ({"scope": "https://elsewhere.example/user_impersonation"}, "invalid_resource", 500011),
    ({"response_type": "token"}, "unsupported_response_type", 70005),
    ({"code_challenge": "x" * 43, "code_challenge_method": "S512"}, "invalid_request", 9002313),
    ({"code_challenge": "short", "code_challenge_method": "S256"}, "invalid_request", 501491),
]


async def test_a_refused_sign_in_goes_back_to_the_app_with_entras_error(
    sandbox: Sandbox, idp: httpx2.AsyncClient
) -> None:
    for params, error, code in REFUSED_SIGN_INS:
        returned = answer(await authorize(idp, sandbox, **params))
        assert returned["error"] == error, params
        assert returned["error_description"].startswith(f"AADSTS{code}:"), params
        assert returned["state"] == "state-123" and "code" not in returned


UNTRUSTED_REQUESTS: list[tuple[dict[str, str], int]] = [
    ({"client_id": ""}, 900144),
    ({"client_id": "c0000000-0000-4000-8000-0000000000ff"}, 700016),
    ({"redirect_uri": "https://attacker.example/callback"}, 50011),
    ({"redirect_uri": "https://localhost:8400"}, 50011),
    ({"redirect_uri": "http://localhost:8400/other-path"}, 50011),
    ({"client_id": "c0000000-0000-4000-8000-000000000001"}, 50011),  # a confidential app with no redirect URI
]


async def test_an_untrusted_app_or_redirect_uri_gets_an_error_page_and_no_redirect(
    sandbox: Sandbox, idp: httpx2.AsyncClient
) -> None:
    for params, code in UNTRUSTED_REQUESTS:
        response = await authorize(idp, sandbox, login_hint="alice", **params)
        assert response.status_code == 400 and "location" not in response.headers, params
        assert f"AADSTS{code}:" in response.text, params


async def expired(sandbox: Sandbox, idp: httpx2.AsyncClient, verifier: str) -> tuple[str, dict[str, str]]:
    sandbox.identity.authorizations.code_lifetime = -1  # born expired: no clock to wait on
    return await code_for(idp, sandbox, verifier), {}


async def replayed(sandbox: Sandbox, idp: httpx2.AsyncClient, verifier: str) -> tuple[str, dict[str, str]]:
    code = await code_for(idp, sandbox, verifier)
    assert (await redeem(idp, sandbox, code, verifier)).status_code == 200
    return code, {}


async def wrong_verifier(sandbox: Sandbox, idp: httpx2.AsyncClient, verifier: str) -> tuple[str, dict[str, str]]:
    return await code_for(idp, sandbox, verifier), {"code_verifier": secrets.token_urlsafe(48)}


async def no_verifier(sandbox: Sandbox, idp: httpx2.AsyncClient, verifier: str) -> tuple[str, dict[str, str]]:
    return await code_for(idp, sandbox, verifier), {"code_verifier": ""}


async def other_redirect(sandbox: Sandbox, idp: httpx2.AsyncClient, verifier: str) -> tuple[str, dict[str, str]]:
    return await code_for(idp, sandbox, verifier), {"redirect_uri": "http://localhost:8401"}


async def made_up(sandbox: Sandbox, idp: httpx2.AsyncClient, verifier: str) -> tuple[str, dict[str, str]]:
    return secrets.token_urlsafe(48), {}


FAILED_REDEMPTIONS: list[tuple[Any, int]] = [
    (replayed, 54005),
    (wrong_verifier, 501481),
    (no_verifier, 501481),
    (other_redirect, 500112),
    (made_up, 9002313),
    (expired, 70008),  # last: it leaves the sandbox issuing expired codes
]


async def test_a_code_is_redeemed_once_by_whoever_holds_its_verifier_and_redirect_uri(
    sandbox: Sandbox, idp: httpx2.AsyncClient
) -> None:
    for case, code in FAILED_REDEMPTIONS:
        verifier = secrets.token_urlsafe(48)
        authorization_code, changes = await case(sandbox, idp, verifier)
        response = await redeem(idp, sandbox, authorization_code, verifier, **changes)
        assert response.status_code == 400, case.__name__
        body = response.json()
        assert body["error"] == "invalid_grant" and body["error_codes"] == [code], case.__name__
        assert authorization_code not in response.text and verifier not in response.text


async def test_a_failed_redemption_spends_the_code(sandbox: Sandbox, idp: httpx2.AsyncClient) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await code_for(idp, sandbox, verifier)
    assert (await redeem(idp, sandbox, code, "guess-" + "x" * 43)).json()["error_codes"] == [501481]
    assert (await redeem(idp, sandbox, code, verifier)).json()["error_codes"] == [54005]
