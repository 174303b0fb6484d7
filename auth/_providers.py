"""Token providers on MSAL, behind the one async interface the Dataverse client consumes.

Each credential builds its MSAL application once, lazily (its constructor does network I/O), and calls
MSAL off the event loop. Concurrent requests for the same scope share one call (single-flight), and tokens
are reused until shortly before they expire. `for_scope` binds a credential to one resource as the
`dataverse.TokenProvider` a client needs. A person's own sign-in (device code, browser) is in `_user.py`.
"""

from __future__ import annotations

import logging
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import httpx2

from dataverse import AccessToken, ConnectionSettings, SingleFlight

from ._certificate import ClientCertificate
from ._errors import AuthError, error_from_msal

logger = logging.getLogger(__name__)

EXPIRY_MARGIN: Final = 300.0  # renew this many seconds before a token expires
PUBLIC_AUTHORITY_HOST: Final = "https://login.microsoftonline.com"
MICROSOFT_AUTHORITY_HOSTS: Final = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)


@dataclass(frozen=True)
class Authority:
    """Where users and apps sign in: `<host>/<tenant>` (AZURE_AUTHORITY_HOST, AZURE_TENANT_ID)."""

    host: str = PUBLIC_AUTHORITY_HOST
    tenant: str = "organizations"

    @property
    def url(self) -> str:
        return f"{self.host.rstrip('/')}/{self.tenant}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.url}/oauth2/v2.0/token"

    @property
    def is_microsoft(self) -> bool:
        return self.host.split("://", 1)[-1].split("/", 1)[0].lower() in MICROSOFT_AUTHORITY_HOSTS


class _MsalHttpClient(httpx2.Client):
    """MSAL's HTTP client on the project's one HTTP stack (proxy and SSL_CERT_FILE honoured)."""

    def __init__(self, authority: Authority | None, **options: Any) -> None:
        super().__init__(**options)
        self.authority = authority

    def get(self, url: httpx2.URL | str, **options: Any) -> httpx2.Response:
        # MSAL builds the user-realm URL from the authority's host name and drops its port; an authority on
        # a non-default port (a local identity provider) must get the request, not port 443.
        target = httpx2.URL(str(url))
        if self.authority is not None and "/common/userrealm/" in target.path:
            own = httpx2.URL(self.authority.host)
            if own.port is not None and target.host == own.host and target.port is None:
                target = target.copy_with(port=own.port)
        return super().get(target, **options)


def msal_http_client(connection: ConnectionSettings | None = None, authority: Authority | None = None) -> httpx2.Client:
    """MSAL's client, connecting as the server's other clients do: timeouts, proxy and CA bundle."""
    import ssl

    connection = connection or ConnectionSettings()
    ca_bundle = connection.ca_bundle
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else True
    return _MsalHttpClient(
        authority,
        verify=verify,
        proxy=connection.proxy,
        trust_env=True,
        timeout=connection.timeout(),
        follow_redirects=False,
    )


def _connection(connection: ConnectionSettings | None, ca_bundle: str | None) -> ConnectionSettings:
    """`connection`, else the defaults with `ca_bundle` (the shorter keyword, when only the CA bundle matters)."""
    return connection or ConnectionSettings(ca_bundle=Path(ca_bundle) if ca_bundle else None)


class Credential(ABC):
    """Obtains tokens for scopes; thread-safe use of MSAL happens in `_acquire`, run in a worker thread."""

    def __init__(self) -> None:
        self._tokens: dict[str, AccessToken] = {}
        self._flights: SingleFlight[AccessToken] = SingleFlight()
        self._http: httpx2.Client | None = None

    async def token(self, scope: str, *, force_refresh: bool = False) -> AccessToken:
        cached = self._tokens.get(scope)
        if cached is not None and not force_refresh and not cached.is_expired(margin=EXPIRY_MARGIN):
            return cached

        async def acquire() -> AccessToken:
            try:
                result = await anyio.to_thread.run_sync(self._acquire, scope, force_refresh)
            except AuthError:
                raise
            except ValueError as error:  # MSAL's word for an authority it cannot use
                raise AuthError(
                    f"The authority cannot be used ({str(error).splitlines()[0][:200]}): check AZURE_TENANT_ID "
                    "(the tenant does not exist?) and AZURE_AUTHORITY_HOST."
                ) from None
            except httpx2.HTTPError as error:
                raise AuthError(f"The identity provider is unreachable ({type(error).__name__}).") from None
            token = self._tokens[scope] = _access_token(result, self.describe(scope))
            return token

        return await self._flights.run(scope, acquire)

    def for_scope(self, scope: str) -> ScopedTokens:
        return ScopedTokens(self, scope)

    def close(self) -> None:
        """Release the HTTP connections MSAL used (the owner calls this when done, e.g. in a lifespan)."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def http_client(self, connection: ConnectionSettings, authority: Authority | None = None) -> httpx2.Client:
        if self._http is None:
            self._http = msal_http_client(connection, authority)
        return self._http

    def describe(self, scope: str) -> str:
        return scope.rsplit("/", 1)[0]

    @abstractmethod
    def _acquire(self, scope: str, force_refresh: bool) -> dict[str, Any]:
        """MSAL's result dict for `scope` (runs in a worker thread)."""


@dataclass(frozen=True)
class ScopedTokens:
    """A credential bound to one scope: the `dataverse.TokenProvider` of one environment."""

    credential: Credential
    scope: str

    async def token(self, *, force_refresh: bool = False) -> AccessToken:
        return await self.credential.token(self.scope, force_refresh=force_refresh)


def _access_token(result: dict[str, Any], what: str) -> AccessToken:
    if "access_token" not in result:
        raise error_from_msal(result, what)
    expires_on = result.get("expires_on")
    expiry = float(expires_on) if expires_on else time.time() + float(result.get("expires_in") or 3600)
    return AccessToken(str(result["access_token"]), expiry)


class MsalApplication(Credential):
    """Shared construction of one MSAL application, built on first use in the worker thread."""

    def __init__(
        self,
        client_id: str,
        authority: Authority,
        *,
        connection: ConnectionSettings | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.authority = authority
        self.connection = _connection(connection, ca_bundle)
        self._application: Any = None

    def application(self) -> Any:
        if self._application is None:
            self._application = self._build()
        return self._application

    def _common(self) -> dict[str, Any]:
        return {
            "authority": self.authority.url,
            "http_client": self.http_client(self.connection, self.authority),
            "instance_discovery": self.authority.is_microsoft,
        }

    def _signed_with(self, certificate: ClientCertificate, *, send_x5c: bool = False) -> dict[str, Any]:
        """MSAL's client credential for a certificate: a fresh signed assertion at each token request."""

        def assertion() -> str:
            return certificate.assertion(self.client_id, self.authority.token_endpoint, send_x5c=send_x5c)

        return {"client_assertion": assertion}

    @abstractmethod
    def _build(self) -> Any: ...

    def _forget(self, scope: str) -> None:
        """Drop cached access tokens for `scope`, so the next call asks the identity provider."""
        import msal

        cache = self.application().token_cache
        # search() is a generator over the cache's own dict: collect first, then remove.
        for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN, target=[scope])):
            cache.remove_at(item)


class ClientSecretCredential(MsalApplication):
    """App-only with a client secret (AZURE_CLIENT_SECRET)."""

    def __init__(
        self,
        client_id: str,
        secret: str,
        authority: Authority,
        *,
        connection: ConnectionSettings | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        super().__init__(client_id, authority, connection=connection, ca_bundle=ca_bundle)
        self._secret = secret

    def _build(self) -> Any:
        import msal

        return msal.ConfidentialClientApplication(self.client_id, client_credential=self._secret, **self._common())

    def _acquire(self, scope: str, force_refresh: bool) -> dict[str, Any]:
        if force_refresh:
            self._forget(scope)
        result: dict[str, Any] = self.application().acquire_token_for_client([scope])
        return result


class CertificateCredential(MsalApplication):
    """App-only with a certificate: PEM or PFX, optional passphrase; `send_x5c` for subject-name/issuer auth."""

    def __init__(
        self,
        client_id: str,
        certificate: ClientCertificate,
        authority: Authority,
        *,
        send_x5c: bool = False,
        connection: ConnectionSettings | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        super().__init__(client_id, authority, connection=connection, ca_bundle=ca_bundle)
        self.certificate = certificate
        self.send_x5c = send_x5c

    def _build(self) -> Any:
        import msal

        return msal.ConfidentialClientApplication(
            self.client_id,
            client_credential=self._signed_with(self.certificate, send_x5c=self.send_x5c),
            **self._common(),
        )

    def _acquire(self, scope: str, force_refresh: bool) -> dict[str, Any]:
        if force_refresh:
            self._forget(scope)
        result: dict[str, Any] = self.application().acquire_token_for_client([scope])
        return result


class PasswordCredential(MsalApplication):
    """Resource-owner password (ROPC). Discouraged: no MFA, no conditional access; offered for parity only."""

    def __init__(self, client_id: str, username: str, password: str, authority: Authority, **options: Any) -> None:
        super().__init__(client_id, authority, **options)
        self.username = username
        self._password = password

    def _build(self) -> Any:
        import msal

        return msal.PublicClientApplication(self.client_id, **self._common())

    def _acquire(self, scope: str, force_refresh: bool) -> dict[str, Any]:
        application = self.application()
        if not force_refresh:
            for account in application.get_accounts(username=self.username):
                silent = application.acquire_token_silent([scope], account=account)
                if silent and "access_token" in silent:
                    return dict(silent)
        with warnings.catch_warnings():
            # MSAL warns that ROPC is deprecated for public clients: this provider exists, documented as
            # discouraged, for integrations that still offer nothing else.
            warnings.simplefilter("ignore", DeprecationWarning)
            result: dict[str, Any] = application.acquire_token_by_username_password(
                self.username, self._password, [scope]
            )
        return result


class ManagedIdentityCredential(Credential):
    """The Azure host's managed identity (App Service: IDENTITY_ENDPOINT and IDENTITY_HEADER)."""

    def __init__(
        self,
        client_id: str | None = None,
        *,
        connection: ConnectionSettings | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.connection = _connection(connection, ca_bundle)
        self._client: Any = None

    def _acquire(self, scope: str, force_refresh: bool) -> dict[str, Any]:
        import msal

        if self._client is None:
            identity = (
                msal.UserAssignedManagedIdentity(client_id=self.client_id)
                if self.client_id
                else msal.SystemAssignedManagedIdentity()
            )
            self._client = msal.ManagedIdentityClient(identity, http_client=self.http_client(self.connection))
        # Managed identity speaks in resources, not scopes.
        resource = scope.removesuffix("/.default")
        result: dict[str, Any] = self._client.acquire_token_for_client(resource=resource)
        return result
