"""Token providers on MSAL: app (secret, certificate, managed identity), signed-in user (device code, browser),
on-behalf-of."""

from ._browser import Browser
from ._cache import EncryptedTokenCache
from ._certificate import ClientCertificate
from ._errors import AuthError, CredentialError
from ._on_behalf_of import OnBehalfOfCredential, OnBehalfOfExchange, UserCredential
from ._providers import (
    Authority,
    CertificateCredential,
    ClientSecretCredential,
    Credential,
    ManagedIdentityCredential,
    PasswordCredential,
    ScopedTokens,
)
from ._user import DeviceCodeCredential, InteractiveCredential

__all__ = [
    "AuthError",
    "Authority",
    "Browser",
    "CertificateCredential",
    "ClientCertificate",
    "ClientSecretCredential",
    "Credential",
    "CredentialError",
    "DeviceCodeCredential",
    "EncryptedTokenCache",
    "InteractiveCredential",
    "ManagedIdentityCredential",
    "OnBehalfOfCredential",
    "OnBehalfOfExchange",
    "PasswordCredential",
    "ScopedTokens",
    "UserCredential",
]
