"""Sign-in failures explained in plain words: what is wrong, and what to change. Never a secret.

AuthError (a dataverse.DataverseError)   any failure to obtain a token
  CredentialError                          the local credential is unusable: file, passphrase, key, expiry
"""

from __future__ import annotations

import re
from typing import Any, Final

from dataverse import DataverseError

# What Entra's AADSTS codes mean to the person configuring the server.
_EXPLANATIONS: Final = {
    7000215: "The client secret is wrong (check AZURE_CLIENT_SECRET: use the secret's value, not its ID).",
    7000222: "The client secret has expired; create a new one for the app registration.",
    700027: "The certificate is not accepted: upload it to the app registration, or check that the key matches it.",
    700024: "The client assertion is outside its valid time: check this machine's clock.",
    700016: "No app registration has this client ID in the tenant (check AZURE_CLIENT_ID and AZURE_TENANT_ID).",
    90002: "The tenant does not exist (check AZURE_TENANT_ID).",
    50126: "The user name or password is wrong.",
    50013: "The user's token cannot be exchanged on their behalf (wrong audience, expired, or tampered).",
    65001: "Consent is missing: an administrator must grant the app permission to Dynamics CRM.",
    500011: "The environment is not known to the tenant (check DATAVERSE_URL), or the app lacks permission to it.",
    70011: "The requested scope is not valid.",
    70016: "The sign-in has not been approved yet.",
    70020: "The device code expired before the sign-in was approved; run dynamics-mcp login again.",
    50034: "The account does not exist in the tenant: sign in with a user of AZURE_TENANT_ID's directory.",
    65004: "The sign-in was cancelled, or consent declined, in the browser; run dynamics-mcp login again.",
    50058: "No user is signed in to the browser session; run dynamics-mcp login.",
    50011: "The redirect URI is not registered: add http://localhost as a Mobile and desktop redirect URI of the app.",
    54005: "The authorization code was already used: a sign-in response was replayed; run dynamics-mcp login again.",
    70008: "The authorization code expired before it was redeemed; run dynamics-mcp login again.",
    500112: "The sign-in response came back to another address than the sign-in asked for; sign in again.",
    501481: "The sign-in response does not belong to this sign-in (its PKCE proof does not match); sign in again.",
}


class AuthError(DataverseError):
    """No token could be obtained; the message says why in plain words."""

    hint = "Check the authentication settings; `dynamics-mcp check` explains each environment."


class CredentialError(AuthError):
    """The configured credential itself is unusable (file, passphrase, key, expiry)."""

    hint = "Fix the certificate settings (AZURE_CLIENT_CERTIFICATE_PATH, AZURE_CLIENT_CERTIFICATE_PASSWORD)."


def error_from_msal(result: dict[str, Any], what: str) -> AuthError:
    """An AuthError for an MSAL error result, explained from its AADSTS code."""
    codes = result.get("error_codes") or []
    description = str(result.get("error_description") or "")
    if not codes:
        match = re.search(r"AADSTS(\d+)", description)
        codes = [int(match.group(1))] if match else []
    code = int(codes[0]) if codes else None
    explanation = _EXPLANATIONS.get(code or 0) or (description.split("\r\n")[0] or str(result.get("error")))
    prefix = f"AADSTS{code}: " if code else ""
    return AuthError(f"Could not get a token for {what}: {prefix}{explanation}")
