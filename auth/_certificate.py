"""Client certificates from PEM (key and certificate) or PFX, checked before any network call.

The client assertion is signed here with PS256 and names the certificate by its SHA-256 thumbprint
(`x5t#S256`), as Entra ID prefers; `x5c` (the chain) is added only for subject-name/issuer authentication.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from ._errors import CredentialError

ASSERTION_LIFETIME = 600


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class ClientCertificate:
    """A private key with its certificate (and chain), ready to sign client assertions."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def sha256_thumbprint(self) -> str:
        return _b64url(self.certificate.fingerprint(hashes.SHA256()))

    @classmethod
    def load(cls, path: Path, password: str | None = None) -> ClientCertificate:
        """Read a PEM (key and certificate in one file) or PFX file; raises CredentialError saying what is wrong."""
        try:
            data = path.read_bytes()
        except OSError as error:
            raise CredentialError(f"Cannot read the certificate file {path}: {error.strerror}.") from None
        secret = password.encode() if password else None
        if path.suffix.lower() in (".pfx", ".p12") or not data.lstrip().startswith(b"-----"):
            key, certificate, chain = _load_pfx(path, data, secret)
        else:
            key, certificate, chain = _load_pem(path, data, secret)
        if not isinstance(key, rsa.RSAPrivateKey):
            kind = "an EC key" if isinstance(key, ec.EllipticCurvePrivateKey) else "not an RSA key"
            raise CredentialError(f"The private key in {path} is {kind}; Entra ID client assertions need RSA.")
        public = key.public_key().public_numbers()
        certified = certificate.public_key()
        if not isinstance(certified, rsa.RSAPublicKey) or certified.public_numbers() != public:
            raise CredentialError(f"The private key in {path} does not match its certificate.")
        expires = certificate.not_valid_after_utc
        if expires < datetime.now(UTC):
            raise CredentialError(
                f"The certificate in {path} expired on {expires:%Y-%m-%d}; create and upload a new one."
            )
        return cls(key, certificate, tuple(chain))

    def assertion(self, client_id: str, token_endpoint: str, *, send_x5c: bool = False) -> str:
        """A signed client assertion for `token_endpoint`."""
        now = int(time.time())
        headers: dict[str, object] = {"x5t#S256": self.sha256_thumbprint, "typ": "JWT"}
        if send_x5c:
            headers["x5c"] = [
                base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
                for cert in (self.certificate, *self.chain)
            ]
        claims = {
            "aud": token_endpoint,
            "iss": client_id,
            "sub": client_id,
            "jti": str(uuid.uuid4()),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        return jwt.encode(claims, self.private_key, algorithm="PS256", headers=headers)


def _load_pem(
    path: Path, data: bytes, password: bytes | None
) -> tuple[object, x509.Certificate, list[x509.Certificate]]:
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CredentialError(f"{path} holds no PEM certificate (it needs the key and the certificate).") from None
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError:
        raise CredentialError(
            f"The private key in {path} is encrypted: set AZURE_CLIENT_CERTIFICATE_PASSWORD."
            if password is None
            else f"The private key in {path} is not encrypted: leave AZURE_CLIENT_CERTIFICATE_PASSWORD unset."
        ) from None
    except ValueError:
        raise CredentialError(
            f"Cannot read the private key in {path}: wrong passphrase, or no private key in the file."
        ) from None
    return key, certificates[0], certificates[1:]


def _load_pfx(
    path: Path, data: bytes, password: bytes | None
) -> tuple[object, x509.Certificate, list[x509.Certificate]]:
    try:
        key, certificate, chain = pkcs12.load_key_and_certificates(data, password)
    except ValueError:
        raise CredentialError(
            f"Cannot open the PFX file {path}: wrong passphrase (AZURE_CLIENT_CERTIFICATE_PASSWORD), or not a PFX file."
        ) from None
    if key is None or certificate is None:
        raise CredentialError(f"The PFX file {path} must hold both the private key and the certificate.")
    return key, certificate, list(chain)
