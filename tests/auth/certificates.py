"""Client certificates made at test time (never committed): PEM, encrypted PEM, PFX, expired, mismatched."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID


def make_certificate(*, days: int = 30, expired: bool = False) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    start, end = (
        (now - datetime.timedelta(days=60), now - datetime.timedelta(days=1))
        if expired
        else (now, now + datetime.timedelta(days=days))
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dynamics-mcp test client")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def certificate_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def write_pem(path: Path, key: rsa.RSAPrivateKey, certificate: x509.Certificate, passphrase: str | None = None) -> Path:
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    path.write_bytes(key_pem + certificate.public_bytes(serialization.Encoding.PEM))
    return path


def write_pfx(path: Path, key: rsa.RSAPrivateKey, certificate: x509.Certificate, passphrase: str) -> Path:
    data = pkcs12.serialize_key_and_certificates(
        b"client", key, certificate, None, serialization.BestAvailableEncryption(passphrase.encode())
    )
    path.write_bytes(data)
    return path
