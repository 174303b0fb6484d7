"""A local identity provider that MSAL really talks to: OpenID discovery, JWKS, authorize and token endpoints.

Served over TLS (see `_certificates.py`) at `https://127.0.0.1:<port>/<tenant>`, as Entra ID's v2.0
endpoints are. Grants: client credentials with a secret or a certificate assertion, resource-owner password,
device code (approved through `POST /_sandbox/device/approve`), authorization code with PKCE (signed in at
the authorization endpoint, see `_authorization.py`), refresh token, and on-behalf-of; plus the App
Service managed-identity endpoint on the plain discovery port. Errors use Entra's body shape and AADSTS codes.
Secrets (client secrets, user passwords, the managed-identity header) are generated into `identity.json`
in the data directory, owner-only, on first start.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._authorization import Authorizations
from ._directory import APPLICATIONS, TENANT_ID, USERS, Application, User, find_application, find_user
from ._errors import OAuthError
from ._tokens import SigningKey

SECRETS_FILE: Final = "identity.json"
ACCESS_LIFETIME: Final = 3600
DEVICE_CODE_LIFETIME: Final = 900
IGNORED_SCOPES: Final = frozenset({"openid", "profile", "offline_access"})
JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEVICE_CODE: Final = "urn:ietf:params:oauth:grant-type:device_code"
ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unpadded(text: str) -> str:
    return text.rstrip("=")


@dataclass
class IdentitySecrets:
    """Generated credentials of the seeded registrations, and the certificates registered for apps."""

    path: Path
    client_secrets: dict[str, str]
    passwords: dict[str, str]
    managed_identity_header: str
    certificates: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> IdentitySecrets:
        path = data_dir / SECRETS_FILE
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                path, data["client_secrets"], data["passwords"], data["managed_identity_header"], data["certificates"]
            )
        created = cls(
            path,
            {str(app.client_id): secrets.token_urlsafe(24) for app in APPLICATIONS if app.confidential},
            {user.name: secrets.token_urlsafe(12) for user in USERS},
            secrets.token_urlsafe(24),
        )
        created.save()
        return created

    def save(self) -> None:
        data = {
            "client_secrets": self.client_secrets,
            "passwords": self.passwords,
            "managed_identity_header": self.managed_identity_header,
            "certificates": self.certificates,
        }
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2)

    def register_certificate(self, client_id: str, certificate_pem: str) -> None:
        """Accept assertions signed with this certificate's key for the app (as uploading it in Entra does)."""
        x509.load_pem_x509_certificate(certificate_pem.encode())  # refuse anything that is not a certificate
        self.certificates.setdefault(client_id, []).append(certificate_pem)
        self.save()


@dataclass
class PendingDevice:
    client_id: str
    scope: str
    user_code: str
    expires_at: float
    user: User | None = None


class IdentityProvider:
    """Issues tokens for the sandbox's users and apps; `audiences` are the resources it knows."""

    def __init__(self, signing_key: SigningKey, secrets_store: IdentitySecrets, audiences: list[str]) -> None:
        self.signing_key = signing_key
        self.secrets = secrets_store
        self.audiences = audiences
        self.base_url = ""  # https://127.0.0.1:<port>, set once listening
        self.devices: dict[str, PendingDevice] = {}
        self.refresh_tokens: dict[str, tuple[User, str, str]] = {}  # token -> (user, client id, scope)
        self.authorizations = Authorizations(self.resource_of)
        self.requests = 0
        self.announced_keys: list[SigningKey] = []  # published before they sign anything, as Entra rotates keys

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{TENANT_ID}"

    @property
    def issuer(self) -> str:
        return f"{self.authority}/v2.0"

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    # -- endpoints -------------------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        tenant = f"/{TENANT_ID}"
        try:
            if path == f"{tenant}/v2.0/.well-known/openid-configuration":
                return JSONResponse(self.openid_configuration())
            if path == f"{tenant}/discovery/v2.0/keys":
                keys = [self.signing_key, *self.announced_keys]
                return JSONResponse({"keys": [key.jwk() for key in keys]})
            if path == f"{tenant}/oauth2/v2.0/token" and request.method == "POST":
                self.requests += 1
                return JSONResponse(await self.token(dict(await request.form())))
            if path == f"{tenant}/oauth2/v2.0/authorize" and request.method == "GET":
                return self.authorizations.authorize(request.query_params)
            if path == f"{tenant}/oauth2/v2.0/devicecode" and request.method == "POST":
                return JSONResponse(self.device_code(dict(await request.form())))
            if path.startswith("/common/userrealm/"):
                return JSONResponse({"ver": "1.0", "account_type": "Managed", "domain_name": "contoso.example"})
            if path == "/_sandbox/device/approve" and request.method == "POST":
                body = await request.json()
                self.approve_device(str(body.get("user_code", "")), str(body.get("user", "")))
                return Response(status_code=204)
            if path == "/_sandbox/signin" and request.method == "POST":
                self.set_browser_user((await request.json()).get("user"))
                return Response(status_code=204)
            if path.startswith("/") and not path.startswith(tenant) and path.count("/") >= 2:
                raise OAuthError("invalid_tenant", 90002, f"Tenant '{path.split('/')[1]}' not found.", 400)
        except OAuthError as error:
            return error.response()
        return Response(status_code=404)

    def openid_configuration(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.authority}/oauth2/v2.0/authorize",
            "token_endpoint": self.token_endpoint,
            "device_authorization_endpoint": f"{self.authority}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{self.authority}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "tenant_region_scope": "NA",
        }

    # -- token endpoint --------------------------------------------------------------------------------------

    async def token(self, form: dict[str, Any]) -> dict[str, Any]:
        grant = str(form.get("grant_type", ""))
        client_id = str(form.get("client_id", ""))
        app = find_application(client_id)
        if app is None:
            raise OAuthError(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory.",
            )
        scope = str(form.get("scope", ""))
        if grant == "client_credentials":
            self.authenticate_client(app, form, required=True)
            return self.app_token(app, self.resource_of(scope))
        if grant == "password":
            self.authenticate_client(app, form, required=False)
            user = find_user(str(form.get("username", "")))
            if user is None or user.application_id or self.secrets.passwords.get(user.name) != form.get("password"):
                raise OAuthError(
                    "invalid_grant", 50126, "Error validating credentials due to invalid username or password."
                )
            return self.user_tokens(user, app, scope)
        if grant == "authorization_code":
            self.authenticate_client(app, form, required=app.confidential)
            issued = self.authorizations.redeem(app, form)
            return self.user_tokens(issued.user, app, issued.scope, nonce=issued.nonce)
        if grant == DEVICE_CODE:
            return self.redeem_device_code(app, str(form.get("device_code", "")))
        if grant == "refresh_token":
            self.authenticate_client(app, form, required=False)
            found = self.refresh_tokens.get(str(form.get("refresh_token", "")))
            if found is None or found[1] != str(app.client_id):
                raise OAuthError(
                    "invalid_grant", 9002313, "Invalid request. The refresh token is malformed or not valid."
                )
            return self.user_tokens(found[0], app, scope or found[2])
        if grant == JWT_BEARER:
            self.authenticate_client(app, form, required=True)
            return self.on_behalf_of(app, str(form.get("assertion", "")), scope)
        raise OAuthError("unsupported_grant_type", 70003, f"The grant type '{grant}' is not supported.")

    def resource_of(self, scope: str) -> str:
        """The audience a scope names (`<resource>/.default`, `<resource>/user_impersonation`)."""
        scopes = [part for part in scope.split() if part not in IGNORED_SCOPES]
        if len(scopes) != 1 or "/" not in scopes[0]:
            raise OAuthError(
                "invalid_scope", 70011, f"The provided value for the input parameter 'scope' is not valid: '{scope}'."
            )
        resource = scopes[0].rsplit("/", 1)[0]
        if resource.rstrip("/") not in [audience.rstrip("/") for audience in self.audiences] and not any(
            resource == f"api://{app.client_id}" for app in APPLICATIONS
        ):
            raise OAuthError(
                "invalid_resource", 500011, f"The resource principal named {resource} was not found in the tenant."
            )
        return resource

    def authenticate_client(self, app: Application, form: dict[str, Any], *, required: bool) -> None:
        """A confidential client proves itself with its secret or a certificate-signed assertion."""
        secret, assertion = form.get("client_secret"), form.get("client_assertion")
        if not app.confidential:
            if secret or assertion:
                raise OAuthError(
                    "invalid_request",
                    700025,
                    "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
                )
            if required:
                raise OAuthError(
                    "invalid_client",
                    7000218,
                    "The request body must contain 'client_assertion' or 'client_secret'.",
                    401,
                )
            return
        if secret is not None:
            if not secrets.compare_digest(str(secret), self.secrets.client_secrets.get(str(app.client_id), "")):
                raise OAuthError(
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                    "secret value, not the client secret ID.",
                    401,
                )
            return
        if assertion is not None:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise OAuthError("invalid_request", 50027, "Invalid client_assertion_type.")
            self.verify_assertion(app, str(assertion))
            return
        raise OAuthError(
            "invalid_client", 7000218, "The request body must contain 'client_assertion' or 'client_secret'.", 401
        )

    def verify_assertion(self, app: Application, assertion: str) -> None:
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise OAuthError(
                "invalid_client", 50027, "Invalid JWT token. The client assertion is malformed.", 401
            ) from None
        certificate = self._certificate_for(app, header)
        if certificate.not_valid_after_utc.timestamp() < time.time():
            raise OAuthError(
                "invalid_client", 700027, "The certificate used for the client assertion has expired.", 401
            )
        try:
            claims = jwt.decode(
                assertion,
                certificate.public_key(),  # type: ignore[arg-type]
                algorithms=["RS256", "PS256"],
                audience=[self.token_endpoint, self.authority, self.issuer],
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise OAuthError(
                "invalid_client", 700024, "Client assertion is not within its valid time range.", 401
            ) from None
        except jwt.InvalidAudienceError:
            raise OAuthError(
                "invalid_client", 700021, "Client assertion audience claim does not match the token endpoint.", 401
            ) from None
        except jwt.PyJWTError:
            raise OAuthError("invalid_client", 700027, "Client assertion failed signature validation.", 401) from None
        if claims["iss"] != str(app.client_id) or claims["sub"] != str(app.client_id):
            raise OAuthError("invalid_client", 700023, "Client assertion iss and sub must both be the client id.", 401)

    def _certificate_for(self, app: Application, header: dict[str, Any]) -> x509.Certificate:
        """The registered certificate the assertion's thumbprint header names (padding-insensitive)."""
        wanted_sha256 = _unpadded(str(header.get("x5t#S256", "")))
        wanted_sha1 = _unpadded(str(header.get("x5t", "")))
        if not wanted_sha256 and not wanted_sha1:
            raise OAuthError("invalid_client", 700027, "The client assertion has no x5t or x5t#S256 header.", 401)
        for pem in self.secrets.certificates.get(str(app.client_id), []):
            certificate = x509.load_pem_x509_certificate(pem.encode())
            der = certificate.public_bytes(serialization.Encoding.DER)
            if wanted_sha256 == _b64url(hashlib.sha256(der).digest()) or wanted_sha1 == _b64url(
                hashlib.sha1(der).digest()  # noqa: S324 - x5t is defined as a SHA-1 thumbprint
            ):
                return certificate
        raise OAuthError(
            "invalid_client",
            700027,
            f"The certificate with the given thumbprint is not registered for application {app.client_id}.",
            401,
        )

    # -- tokens ----------------------------------------------------------------------------------------------

    def _access(self, subject: User, audience: str, client_id: str, *, scope: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + ACCESS_LIFETIME,
            "oid": str(subject.object_id),
            "sub": str(subject.object_id),
            "tid": str(TENANT_ID),
            "appid": client_id,
            "azp": client_id,
            "ver": "2.0",
            "uti": _b64url(uuid.uuid4().bytes),
        }
        if scope is None:
            claims["idtyp"] = "app"
            claims["roles"] = []
        else:
            claims.update(scp=scope, upn=subject.upn, preferred_username=subject.upn, name=subject.full_name)
        return self.signing_key.sign(claims)

    def app_token(self, app: Application, resource: str) -> dict[str, Any]:
        subject = app.application_user
        return {
            "token_type": "Bearer",
            "expires_in": ACCESS_LIFETIME,
            "ext_expires_in": ACCESS_LIFETIME,
            "access_token": self._access(subject, resource, str(app.client_id), scope=None),
        }

    def user_tokens(self, user: User, app: Application, scope: str, *, nonce: str | None = None) -> dict[str, Any]:
        resource = self.resource_of(scope)
        granted = scope.split()[0] if scope else ""
        permission = granted.rsplit("/", 1)[-1] if "/" in granted else "user_impersonation"
        refresh = secrets.token_urlsafe(32)
        self.refresh_tokens[refresh] = (user, str(app.client_id), scope)
        now = int(time.time())
        identity: dict[str, Any] = {
            "aud": str(app.client_id),
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + ACCESS_LIFETIME,
            "oid": str(user.object_id),
            "sub": str(user.object_id),
            "tid": str(TENANT_ID),
            "preferred_username": user.upn,
            "name": user.full_name,
            "ver": "2.0",
        }
        if nonce is not None:  # echoed from the authorization request, as OpenID Connect requires
            identity["nonce"] = nonce
        id_token = self.signing_key.sign(identity)
        return {
            "token_type": "Bearer",
            "scope": " ".join(part for part in scope.split() if part not in IGNORED_SCOPES),
            "expires_in": ACCESS_LIFETIME,
            "ext_expires_in": ACCESS_LIFETIME,
            "access_token": self._access(user, resource, str(app.client_id), scope=permission),
            "refresh_token": refresh,
            "id_token": id_token,
            "client_info": _b64url(json.dumps({"uid": str(user.object_id), "utid": str(TENANT_ID)}).encode()),
        }

    def on_behalf_of(self, app: Application, assertion: str, scope: str) -> dict[str, Any]:
        """Exchange a user's token for `app` (audience its client id or api:// URI) for one to `scope`."""
        audiences = [str(app.client_id), f"api://{app.client_id}"]
        try:
            claims = self.signing_key.verify(assertion, audiences)
        except Exception as error:  # TokenRejected: reported as Entra reports a bad assertion
            raise OAuthError(
                "invalid_grant", 50013, f"Assertion failed signature validation or is not for this application. {error}"
            ) from None
        user = find_user(str(claims["oid"]))
        if user is None or user.application_id is not None:
            raise OAuthError("invalid_grant", 50013, "The assertion does not name a user of this tenant.")
        return self.user_tokens(user, app, scope)

    # -- device code -----------------------------------------------------------------------------------------

    def device_code(self, form: dict[str, Any]) -> dict[str, Any]:
        client_id = str(form.get("client_id", ""))
        if find_application(client_id) is None:
            raise OAuthError("unauthorized_client", 700016, f"Application with identifier '{client_id}' was not found.")
        scope = str(form.get("scope", ""))
        self.resource_of(scope)
        device_code = secrets.token_urlsafe(32)
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        self.devices[device_code] = PendingDevice(client_id, scope, user_code, time.time() + DEVICE_CODE_LIFETIME)
        verification_uri = f"{self.base_url}/device"
        return {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification_uri,
            "expires_in": DEVICE_CODE_LIFETIME,
            "interval": 1,
            "message": (
                f"To sign in, use a web browser to open the page {verification_uri} "
                f"and enter the code {user_code} to authenticate."
            ),
        }

    def approve_device(self, user_code: str, user_name: str) -> None:
        user = find_user(user_name)
        for pending in self.devices.values():
            if pending.user_code == user_code.strip().upper() and user is not None:
                pending.user = user
                return
        raise OAuthError("invalid_grant", 70000, "The user code or user is not known.")

    def set_browser_user(self, name: object) -> None:
        """Who signs in at the authorization endpoint when no login_hint names a user; None: the person cancels."""
        if name is None:
            self.authorizations.browser_user = None
            return
        user = find_user(name) if isinstance(name, str) else None
        if user is None or user.application_id is not None:
            raise OAuthError("invalid_request", 50034, f"The user account {name} does not exist in the directory.")
        self.authorizations.browser_user = user.name

    def redeem_device_code(self, app: Application, device_code: str) -> dict[str, Any]:
        pending = self.devices.get(device_code)
        if pending is None or pending.client_id not in (str(app.client_id), app.name):
            raise OAuthError(
                "invalid_grant", 70000, "The provided value for the input parameter 'device_code' is not valid."
            )
        if time.time() > pending.expires_at:
            raise OAuthError(
                "expired_token", 70020, "The provided value for the input parameter 'device_code' has expired."
            )
        if pending.user is None:
            raise OAuthError("authorization_pending", 70016, "OAuth 2.0 device flow error. Authorization is pending.")
        del self.devices[device_code]
        return self.user_tokens(pending.user, app, pending.scope)

    # -- managed identity (App Service protocol) ---------------------------------------------------------------

    def managed_identity(self, request: Request) -> Response:
        """`GET <IDENTITY_ENDPOINT>?resource=...&api-version=2019-08-01` with the `X-IDENTITY-HEADER` secret."""
        if not secrets.compare_digest(
            request.headers.get("x-identity-header", ""), self.secrets.managed_identity_header
        ):
            return JSONResponse(
                {"statusCode": 401, "message": "Unauthorized: X-IDENTITY-HEADER is missing or wrong."}, status_code=401
            )
        resource = request.query_params.get("resource", "")
        try:
            resource = self.resource_of(f"{resource.rstrip('/')}/.default")
        except OAuthError as error:
            return JSONResponse({"statusCode": 400, "message": error.description}, status_code=400)
        app = APPLICATIONS[0]
        token = self.app_token(app, resource)
        return JSONResponse(
            {
                "access_token": token["access_token"],
                "expires_on": str(int(time.time()) + ACCESS_LIFETIME),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": str(app.client_id),
            }
        )
