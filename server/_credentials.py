"""Credentials from settings: which `auth` provider serves a configuration, and each environment's scope.

App-only modes ask for `<environment>/.default`; delegated ones for `<environment>/user_impersonation`.
A configuration error names the missing setting; no secret ever appears in one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from auth import (
    Authority,
    CertificateCredential,
    ClientCertificate,
    ClientSecretCredential,
    Credential,
    DeviceCodeCredential,
    EncryptedTokenCache,
    InteractiveCredential,
    ManagedIdentityCredential,
    OnBehalfOfCredential,
    OnBehalfOfExchange,
    PasswordCredential,
)

from ._settings import AuthMode, ConfigurationError, ServerSettings

APP_ONLY: Final = frozenset({"client-secret", "certificate", "managed-identity"})
# A public client any tenant can use for delegated sign-in when AZURE_CLIENT_ID is not set (Azure CLI's).
DEFAULT_PUBLIC_CLIENT_ID: Final = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


def scope_for(mode: AuthMode, environment_url: str) -> str:
    permission = ".default" if mode in APP_ONLY else "user_impersonation"
    return f"{environment_url.rstrip('/')}/{permission}"


def _require(value: object, setting: str, example: str) -> None:
    if not value:
        raise ConfigurationError(f"{setting} is required for this authentication mode, e.g. {example}.")


def build_credential(settings: ServerSettings, *, interactive: bool = False) -> Credential:
    """The credential the settings describe (not yet used: MSAL is built on the first token request).

    `interactive`: a person at a terminal (`dynamics-mcp login`) may be shown a device code. A signed-in user
    signs in in the browser in `interactive` mode, and in `login` unless `device-code` was asked for by name.
    """
    mode = settings.auth_mode()
    authority = Authority(settings.authority_host, settings.tenant_id or "organizations")
    connection = settings.connection()
    client_id = settings.client_id or ""
    if mode in ("client-secret", "certificate", "on-behalf-of"):
        _require(settings.tenant_id, "AZURE_TENANT_ID", "AZURE_TENANT_ID=<directory (tenant) id>")
        _require(settings.client_id, "AZURE_CLIENT_ID", "AZURE_CLIENT_ID=<application (client) id>")
    if mode == "client-secret":
        _require(settings.client_secret, "AZURE_CLIENT_SECRET", "AZURE_CLIENT_SECRET=<the secret's value>")
        assert settings.client_secret is not None
        return ClientSecretCredential(
            client_id, settings.client_secret.get_secret_value(), authority, connection=connection
        )
    if mode == "certificate":
        _require(
            settings.certificate_path, "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PATH=/path/app.pem"
        )
        assert settings.certificate_path is not None
        certificate = _certificate(settings.certificate_path, settings)
        return CertificateCredential(
            client_id, certificate, authority, send_x5c=settings.send_certificate_chain, connection=connection
        )
    if mode == "managed-identity":
        return ManagedIdentityCredential(settings.client_id, connection=connection)
    if mode == "password":
        _require(settings.username, "AZURE_USERNAME", "AZURE_USERNAME=user@contoso.com")
        _require(settings.password, "AZURE_PASSWORD", "AZURE_PASSWORD=<password>")
        assert settings.username is not None and settings.password is not None
        return PasswordCredential(
            client_id or DEFAULT_PUBLIC_CLIENT_ID,
            settings.username,
            settings.password.get_secret_value(),
            authority,
            connection=connection,
        )
    if mode == "on-behalf-of":
        _require(settings.user_assertion, "DYNAMICS_MCP_USER_ASSERTION", "the signed-in user's token")
        assert settings.user_assertion is not None
        return OnBehalfOfCredential(
            client_id,
            _server_credential(settings),
            authority,
            settings.user_assertion.get_secret_value(),
            connection=connection,
        )
    if mode in ("device-code", "interactive"):
        cache = EncryptedTokenCache(settings.token_cache) if settings.token_cache else EncryptedTokenCache()
        public_client = client_id or DEFAULT_PUBLIC_CLIENT_ID
        if mode == "interactive" or (interactive and settings.auth is None):
            return InteractiveCredential(
                public_client,
                authority,
                login_hint=settings.username,
                cache=cache.cache,
                on_cache_change=cache.save,
                terminal=interactive,
                connection=connection,
            )
        return DeviceCodeCredential(
            public_client,
            authority,
            cache=cache.cache,
            on_cache_change=cache.save,
            terminal=interactive,
            connection=connection,
        )
    raise ConfigurationError(f"DYNAMICS_MCP_AUTH={mode} needs no credential object here.")


def _certificate(path: Path, settings: ServerSettings) -> ClientCertificate:
    password = settings.certificate_password.get_secret_value() if settings.certificate_password else None
    return ClientCertificate.load(path, password)


def _server_credential(settings: ServerSettings) -> str | ClientCertificate:
    """The server's own proof of identity for on-behalf-of: its secret, else its certificate."""
    if settings.client_secret:
        return settings.client_secret.get_secret_value()
    if settings.certificate_path:
        return _certificate(settings.certificate_path, settings)
    raise ConfigurationError(
        "on-behalf-of needs the server's own credential: AZURE_CLIENT_SECRET=<the secret's value> or "
        "AZURE_CLIENT_CERTIFICATE_PATH=/path/app.pem."
    )


def build_exchange(settings: ServerSettings) -> OnBehalfOfExchange:
    """The server's identity exchanging each HTTP caller's token for their Dataverse tokens."""
    _require(settings.tenant_id, "AZURE_TENANT_ID", "AZURE_TENANT_ID=<directory (tenant) id>")
    _require(settings.client_id, "AZURE_CLIENT_ID", "AZURE_CLIENT_ID=<the server's application (client) id>")
    assert settings.tenant_id is not None and settings.client_id is not None
    return OnBehalfOfExchange(
        settings.client_id,
        _server_credential(settings),
        Authority(settings.authority_host, settings.tenant_id),
        connection=settings.connection(),
    )
