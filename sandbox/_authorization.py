"""The authorization endpoint: Entra ID's authorization code flow with PKCE, for a browser nobody sits at.

`GET <authority>/oauth2/v2.0/authorize` checks the app and its redirect URI first, as Entra does: an unknown app
or an unregistered redirect URI gets an error page, never a redirect. It then signs a user in without a human:
the user `login_hint` names, else `browser_user` (set with `POST /_sandbox/signin {"user": "bob"}`; `null`
makes the person cancel). The answer goes back as `response_mode` asks: `query` (a 302 to the redirect URI with
`code` and `state`), `fragment`, or `form_post` (a page whose form, submitted by script, posts them there).
Errors found once the redirect URI is trusted go back the same way, with an AADSTS code in `error_description`.

A code is single use (a second redemption fails, and so does every later one), expires after
`code_lifetime` seconds, and is bound to the client, the redirect URI and the PKCE challenge (`S256` or
`plain`), all checked when the token endpoint redeems it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from starlette.responses import HTMLResponse, RedirectResponse, Response

from ._directory import TENANT_ID, Application, User, find_application, find_user
from ._errors import OAuthError

CODE_LIFETIME: Final = 600  # Entra: "authorization codes are short lived, typically about 10 minutes"
RESPONSE_MODES: Final = frozenset({"query", "fragment", "form_post"})
CHALLENGE_METHODS: Final = frozenset({"S256", "plain"})
LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "[::1]"})


@dataclass(frozen=True)
class IssuedCode:
    """What an authorization code stands for, checked again when it is redeemed."""

    client_id: str
    redirect_uri: str
    scope: str
    user: User
    challenge: str | None
    method: str
    nonce: str | None
    expires_at: float


def is_registered(redirect_uri: str, registered: tuple[str, ...]) -> bool:
    """Entra's match: exact, except that a loopback `http` URI matches its registration on any port."""
    if redirect_uri in registered:
        return True
    wanted = urlsplit(redirect_uri)
    if wanted.scheme != "http" or wanted.netloc.rsplit(":", 1)[0] not in LOOPBACK_HOSTS:
        return False
    for candidate in registered:
        known = urlsplit(candidate)
        same_host = known.netloc.rsplit(":", 1)[0] == wanted.netloc.rsplit(":", 1)[0]
        if known.scheme == "http" and same_host and (known.path or "/") == (wanted.path or "/"):
            return not wanted.query and not wanted.fragment
    return False


def pkce_transform(verifier: str, method: str) -> str:
    """The challenge a code verifier stands for (RFC 7636 §4.2)."""
    if method == "plain":
        return verifier
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _error_page(error: OAuthError) -> Response:
    """Entra's answer when it cannot trust the redirect URI: a page for the person, nothing for the app."""
    page = (
        "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>"
        "<h1>Sorry, but we're having trouble signing you in.</h1>"
        f"<p>{html.escape(error.message)}</p></body></html>"
    )
    return HTMLResponse(page, status_code=400)


def _reply(redirect_uri: str, mode: str, fields: Mapping[str, str | None]) -> Response:
    """Send the authorization response back to the app the way `response_mode` asks."""
    present = {name: value for name, value in fields.items() if value is not None}
    if mode == "form_post":
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}"/>'
            for name, value in present.items()
        )
        page = (
            "<!DOCTYPE html><html><head><title>Working...</title></head><body>"
            f'<form method="POST" name="hiddenform" action="{html.escape(redirect_uri)}">{inputs}'
            '<noscript><p>Script is disabled. Click Submit to continue.</p><input type="submit" value="Submit"/>'
            "</noscript></form><script>document.forms[0].submit();</script></body></html>"
        )
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})
    separator = "#" if mode == "fragment" else ("&" if "?" in redirect_uri else "?")
    return RedirectResponse(redirect_uri + separator + urlencode(present), status_code=302)


class Authorizations:
    """Codes issued at the sign-in page and redeemed once at the token endpoint.

    `check_scope` validates a requested scope (raising `OAuthError`), as the token endpoint does.
    """

    def __init__(self, check_scope: Callable[[str], str]) -> None:
        self.check_scope = check_scope
        self.codes: dict[str, IssuedCode] = {}
        self.redeemed: set[str] = set()  # so a replayed code is told apart from a made-up one
        self.browser_user: str | None = "admin"
        self.code_lifetime: float = CODE_LIFETIME

    def authorize(self, params: Mapping[str, str]) -> Response:
        client_id = params.get("client_id", "")
        if not client_id:
            return _error_page(
                OAuthError(
                    "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'."
                )
            )
        app = find_application(client_id)
        if app is None:
            return _error_page(
                OAuthError(
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{client_id}' was not found in the directory '{TENANT_ID}'.",
                )
            )
        redirect_uri = params.get("redirect_uri", "")
        if not is_registered(redirect_uri, app.redirect_uris):
            return _error_page(
                OAuthError(
                    "invalid_request",
                    50011,
                    f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs "
                    f"configured for the application '{app.client_id}'. Make sure the redirect URI sent in the "
                    "request matches one added to your application in the Azure portal.",
                )
            )
        mode = params.get("response_mode") or "query"
        state = params.get("state")
        if mode not in RESPONSE_MODES:
            error = OAuthError("invalid_request", 70007, f"The response_mode '{mode}' is not supported.")
            return _reply(redirect_uri, "query", {"error": error.error, "error_description": error.message})
        try:
            code = self._issue(app, redirect_uri, params)
        except OAuthError as error:
            return _reply(
                redirect_uri, mode, {"error": error.error, "error_description": error.message, "state": state}
            )
        return _reply(redirect_uri, mode, {"code": code, "state": state})

    def _issue(self, app: Application, redirect_uri: str, params: Mapping[str, str]) -> str:
        response_type = params.get("response_type", "")
        if response_type != "code":
            raise OAuthError(
                "unsupported_response_type", 70005, f"The response_type '{response_type}' is not supported."
            )
        scope = params.get("scope", "")
        self.check_scope(scope)
        challenge = params.get("code_challenge") or None
        method = params.get("code_challenge_method") or "plain"  # RFC 7636: plain when the method is left out
        if method not in CHALLENGE_METHODS:
            raise OAuthError(
                "invalid_request",
                9002313,
                f"Invalid request. Request is malformed or invalid: code_challenge_method '{method}' is neither "
                "S256 nor plain.",
            )
        if challenge is not None and not 43 <= len(challenge) <= 128:
            raise OAuthError("invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
        if params.get("prompt") == "none":
            # The sandbox keeps no browser session: nobody is signed in for a silent request.
            raise OAuthError("login_required", 50058, "A silent sign-in request was sent but no user is signed in.")
        user = self._signed_in_user(params.get("login_hint"))
        code = secrets.token_urlsafe(48)
        self.codes[code] = IssuedCode(
            client_id=str(app.client_id),
            redirect_uri=redirect_uri,
            scope=scope,
            user=user,
            challenge=challenge,
            method=method,
            nonce=params.get("nonce"),
            expires_at=time.time() + self.code_lifetime,
        )
        return code

    def _signed_in_user(self, login_hint: str | None) -> User:
        """Who signs in at the page: the hinted user, else the configured one; nobody when they cancel."""
        if login_hint:
            user = find_user(login_hint)
            if user is None or user.application_id is not None:
                raise OAuthError(
                    "access_denied",
                    50034,
                    f"The user account {login_hint} does not exist in the {TENANT_ID} directory. To sign into "
                    "this application, the account must be added to the directory.",
                )
            return user
        user = find_user(self.browser_user) if self.browser_user else None
        if user is None or user.application_id is not None:
            raise OAuthError("access_denied", 65004, "User declined to consent to access the app.")
        return user

    def redeem(self, app: Application, form: Mapping[str, Any]) -> IssuedCode:
        """The grant behind `code`, once: the client, redirect URI and PKCE verifier must be the ones it was for."""
        code = str(form.get("code") or "")
        if not code:
            raise OAuthError(
                "invalid_request", 900144, "The request body must contain the following parameter: 'code'."
            )
        if code in self.redeemed:
            raise OAuthError(
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an "
                "existing refresh token.",
            )
        issued = self.codes.pop(code, None)
        if issued is None:
            raise OAuthError("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
        self.redeemed.add(code)  # a failed redemption spends the code too: no guessing the verifier
        if issued.client_id != str(app.client_id):
            raise OAuthError("invalid_grant", 70000, "Provided grant is invalid or malformed.")
        if time.time() > issued.expires_at:
            raise OAuthError(
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to inactivity. Send a new "
                "interactive authorization request for this user and resource.",
            )
        redirect_uri = str(form.get("redirect_uri") or "")
        if redirect_uri != issued.redirect_uri:
            raise OAuthError(
                "invalid_grant",
                500112,
                f"The reply address '{redirect_uri}' does not match the reply address '{issued.redirect_uri}' "
                "provided when requesting Authorization code.",
            )
        if issued.challenge is not None:
            verifier = str(form.get("code_verifier") or "")
            if not secrets.compare_digest(pkce_transform(verifier, issued.method), issued.challenge):
                raise OAuthError(
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                )
        return issued
