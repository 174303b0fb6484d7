"""Bearer tokens: RS256 JWTs signed by a key kept in the sandbox's data directory.

Tokens carry the claims Dataverse reads from an Entra ID access token: `aud` (the environment URL), `oid`
(the user's object id), `tid`, `scp` or `roles`, `exp`. The key is generated on first use and never leaves
the data directory, so `dynamics-mcp sandbox token` and a running sandbox agree without talking to each other.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ._directory import TENANT_ID, User

KEY_FILE: Final = "signing-key.pem"
TOKEN_LIFETIME: Final = 3600


class TokenRejected(Exception):
    """A bearer token the sandbox does not accept; the message says why, never the token."""


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    """The sandbox's token-signing key pair, and the tokens it no longer accepts."""

    private_key: rsa.RSAPrivateKey
    # SHA-256 digests of tokens treated as expired before their `exp` (Sandbox.expire_tokens).
    expired: set[str] = field(default_factory=set, compare=False)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SigningKey:
        path = data_dir / KEY_FILE
        if path.exists():
            # The sandbox wrote this key itself: checking the RSA numbers again costs ~0.15 s on every start.
            loaded = serialization.load_pem_private_key(
                path.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True
            )
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise TypeError(f"{path} does not hold an RSA private key")
            return cls(loaded)
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written owner-only: whoever reads this key can mint tokens for the sandbox.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
        return cls(private_key)

    @property
    def key_id(self) -> str:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return _base64url(hashlib.sha256(public).digest())[:16]

    def jwk(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.key_id,
            "n": _base64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _base64url(numbers.e.to_bytes(3, "big")),
        }

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.key_id, "typ": "JWT"})

    def issue_user_token(
        self,
        user: User,
        audience: str,
        issuer: str,
        *,
        lifetime: int = TOKEN_LIFETIME,
        scope: str = "user_impersonation",
        client_id: str = "51f81489-12ee-4a9e-aaae-a2591f45987d",
    ) -> str:
        """A delegated token for `user`, as Entra ID issues one for `audience`."""
        now = int(time.time())
        return self.sign(
            {
                "aud": audience,
                "iss": issuer,
                "iat": now,
                "nbf": now,
                "exp": now + lifetime,
                "oid": str(user.object_id),
                "sub": str(user.object_id),
                "tid": str(TENANT_ID),
                "upn": user.upn,
                "name": user.full_name,
                "scp": scope,
                "appid": client_id,
                "azp": client_id,
                "ver": "1.0",
                "uti": _base64url(uuid.uuid4().bytes),
            }
        )

    def verify(self, token: str, audiences: list[str]) -> dict[str, Any]:
        """The claims of a token signed by this key for one of `audiences`; raises TokenRejected."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.private_key.public_key(),
                algorithms=["RS256"],
                audience=audiences,
                options={"require": ["exp", "aud", "oid"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("The access token has expired.") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("The access token was issued for another resource (aud).") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("The access token's signature is not valid.") from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenRejected(f"The access token has no '{error.claim}' claim.") from None
        except jwt.PyJWTError:
            raise TokenRejected("The access token is malformed.") from None
        if hashlib.sha256(token.encode()).hexdigest() in self.expired:
            raise TokenRejected("The access token has expired.")
        return claims
