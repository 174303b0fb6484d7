"""Token providers on MSAL: app (secret, certificate, managed identity), delegated user, on-behalf-of."""

from ._cache import EncryptedTokenCache
from ._certificate import ClientCertificate
from ._errors import AuthError, CredentialError
from ._on_behalf_of import OnBehalfOfCredential, OnBehalfOfExchange, UserCredential
from ._providers import (
    Authority,
    CertificateCredential,
    ClientSecretCredential,
    Credential,
    DeviceCodeCredential,
    ManagedIdentityCredential,
    PasswordCredential,
    ScopedTokens,
)

__all__ = [
    "AuthError",
    "Authority",
    "CertificateCredential",
    "ClientCertificate",
    "ClientSecretCredential",
    "Credential",
    "CredentialError",
    "DeviceCodeCredential",
    "EncryptedTokenCache",
    "ManagedIdentityCredential",
    "OnBehalfOfCredential",
    "OnBehalfOfExchange",
    "PasswordCredential",
    "ScopedTokens",
    "UserCredential",
]
