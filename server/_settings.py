"""Configuration: environment variables (names shared with azure-identity), a TOML file, command-line flags.

Flags win over environment variables, which win over the TOML file. A configuration error names the setting,
what was wrong, and an example of a right value; secrets never appear in a message.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from dataverse._transport import api_base_url

AuthMode = Literal[
    "token",
    "client-secret",
    "certificate",
    "managed-identity",
    "device-code",
    "interactive",
    "on-behalf-of",
    "password",
]


class ConfigurationError(Exception):
    """The configuration cannot be used; the message says which setting and how to fix it."""


class EnvironmentSettings(BaseModel):
    """One Dataverse environment, from DATAVERSE_URL or a `[[environments]]` table of the TOML file."""

    name: str | None = None
    url: str
    api_version: str = "v9.2"
    access_token: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def valid_url(cls, url: str) -> str:
        try:
            api_base_url(url)
        except ValueError as error:
            raise ValueError(f"{error}; e.g. https://contoso.crm.dynamics.com") from None
        return url.rstrip("/")

    @field_validator("api_version")
    @classmethod
    def valid_version(cls, version: str) -> str:
        try:
            api_base_url("https://example.invalid", version)
        except ValueError:
            raise ValueError(f"{version!r} is not an API version such as v9.2") from None
        return version

    def display_name(self) -> str:
        """The configured name, else the URL's first host label (contoso of contoso.crm.dynamics.com)."""
        if self.name:
            return self.name
        parts = urlsplit(self.url)
        host = parts.hostname or self.url
        return parts.netloc if host.replace(".", "").isdigit() or ":" in host else host.split(".")[0]


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return frozenset(part.strip().lower() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple | set | frozenset):
        return frozenset(str(part).strip().lower() for part in value)
    return value


def _split_exact(value: Any) -> Any:
    """A comma-separated list whose items keep their case (audiences, scopes)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    url: str | None = Field(None, validation_alias=AliasChoices("DATAVERSE_URL", "url"))
    api_version: str = Field("v9.2", validation_alias=AliasChoices("DATAVERSE_API_VERSION", "api_version"))
    access_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("DATAVERSE_ACCESS_TOKEN", "access_token")
    )
    auth: AuthMode | None = Field(None, validation_alias=AliasChoices("DYNAMICS_MCP_AUTH", "auth"))
    environments: list[EnvironmentSettings] = Field(default_factory=list)
    default_environment: str | None = Field(
        None, validation_alias=AliasChoices("DYNAMICS_MCP_DEFAULT_ENVIRONMENT", "default_environment")
    )
    read_only: bool = Field(False, validation_alias=AliasChoices("DYNAMICS_MCP_READ_ONLY", "read_only"))
    allowed_tables: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias=AliasChoices("DYNAMICS_MCP_ALLOWED_TABLES", "allowed_tables")
    )
    denied_tables: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias=AliasChoices("DYNAMICS_MCP_DENIED_TABLES", "denied_tables")
    )
    connect_timeout: float | None = Field(
        None, ge=0, validation_alias=AliasChoices("DATAVERSE_CONNECT_TIMEOUT", "connect_timeout")
    )
    read_timeout: float | None = Field(
        None, ge=0, validation_alias=AliasChoices("DATAVERSE_READ_TIMEOUT", "read_timeout")
    )
    max_concurrency: int = Field(
        52, ge=1, le=52, validation_alias=AliasChoices("DATAVERSE_MAX_CONCURRENCY", "max_concurrency")
    )
    sandbox_user: str = Field("admin", validation_alias=AliasChoices("DYNAMICS_MCP_SANDBOX_USER", "sandbox_user"))
    tenant_id: str | None = Field(None, validation_alias=AliasChoices("AZURE_TENANT_ID", "tenant_id"))
    client_id: str | None = Field(None, validation_alias=AliasChoices("AZURE_CLIENT_ID", "client_id"))
    client_secret: SecretStr | None = Field(None, validation_alias=AliasChoices("AZURE_CLIENT_SECRET", "client_secret"))
    certificate_path: Path | None = Field(
        None, validation_alias=AliasChoices("AZURE_CLIENT_CERTIFICATE_PATH", "certificate_path")
    )
    certificate_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AZURE_CLIENT_CERTIFICATE_PASSWORD", "certificate_password")
    )
    send_certificate_chain: bool = Field(
        False, validation_alias=AliasChoices("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "send_certificate_chain")
    )
    authority_host: str = Field(
        "https://login.microsoftonline.com", validation_alias=AliasChoices("AZURE_AUTHORITY_HOST", "authority_host")
    )
    username: str | None = Field(None, validation_alias=AliasChoices("AZURE_USERNAME", "username"))
    password: SecretStr | None = Field(None, validation_alias=AliasChoices("AZURE_PASSWORD", "password"))
    user_assertion: SecretStr | None = Field(
        None, validation_alias=AliasChoices("DYNAMICS_MCP_USER_ASSERTION", "user_assertion")
    )
    ca_bundle: Path | None = Field(None, validation_alias=AliasChoices("SSL_CERT_FILE", "ca_bundle"))
    token_cache: Path | None = Field(None, validation_alias=AliasChoices("DYNAMICS_MCP_TOKEN_CACHE", "token_cache"))
    discovery_url: str | None = Field(None, validation_alias=AliasChoices("DATAVERSE_DISCOVERY_URL", "discovery_url"))
    audience: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=AliasChoices("DYNAMICS_MCP_AUDIENCE", "audience")
    )
    public_url: str | None = Field(None, validation_alias=AliasChoices("DYNAMICS_MCP_PUBLIC_URL", "public_url"))
    allowed_hosts: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias=AliasChoices("DYNAMICS_MCP_ALLOWED_HOSTS", "allowed_hosts")
    )
    allowed_origins: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias=AliasChoices("DYNAMICS_MCP_ALLOWED_ORIGINS", "allowed_origins")
    )
    allowed_tenants: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias=AliasChoices("DYNAMICS_MCP_ALLOWED_TENANTS", "allowed_tenants")
    )
    required_scopes: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=AliasChoices("DYNAMICS_MCP_REQUIRED_SCOPES", "required_scopes")
    )
    tool_scopes: dict[str, frozenset[str]] = Field(
        default_factory=dict, validation_alias=AliasChoices("DYNAMICS_MCP_TOOL_SCOPES", "tool_scopes")
    )

    @field_validator("discovery_url", "public_url")
    @classmethod
    def valid_service_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url.rstrip("/")

    @field_validator("tool_scopes")
    @classmethod
    def known_tools(cls, scopes: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
        from tools import TOOL_NAMES

        unknown = sorted(set(scopes) - set(TOOL_NAMES))
        if unknown:
            raise ValueError(f"no tool named {', '.join(unknown)}; the tools are {', '.join(TOOL_NAMES)}")
        return scopes

    @field_validator("authority_host")
    @classmethod
    def https_authority(cls, host: str) -> str:
        if not host.startswith("https://"):
            raise ValueError("the authority must use https://, e.g. https://login.microsoftonline.com")
        return host.rstrip("/")

    def auth_mode(self, transport: str = "stdio") -> AuthMode:
        """DYNAMICS_MCP_AUTH, or the mode the other settings imply.

        Over HTTP, the server's own app credentials mean on-behalf-of: each caller reaches Dataverse as
        themselves, which is what a server shared by many users must do.
        """
        if self.auth is not None:
            return self.auth
        if transport == "http" and self.client_id and (self.client_secret or self.certificate_path):
            return "on-behalf-of"
        if self.access_token is not None or any(e.access_token for e in self.environments):
            return "token"
        if self.client_id and self.client_secret:
            return "client-secret"
        if self.client_id and self.certificate_path:
            return "certificate"
        if self.username and self.password:
            return "password"
        if os.environ.get("IDENTITY_ENDPOINT") and os.environ.get("IDENTITY_HEADER"):
            return "managed-identity"
        return "device-code"

    _split_sets = field_validator(
        "allowed_tables", "denied_tables", "allowed_hosts", "allowed_origins", "allowed_tenants", mode="before"
    )(_split)
    _split_exact = field_validator("audience", "required_scopes", mode="before")(_split_exact)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings

    def configured_environments(self) -> list[EnvironmentSettings]:
        """The environments to serve: the TOML file's, or the one DATAVERSE_URL names; none means the sandbox."""
        if self.environments:
            return self.environments
        if self.url:
            return [EnvironmentSettings(url=self.url, api_version=self.api_version, access_token=self.access_token)]
        return []


def load_settings(config: Path | None = None, **flags: Any) -> ServerSettings:
    """Settings from the TOML file (lowest), the environment, then flags; raises ConfigurationError."""
    file_values: dict[str, Any] = {}
    if config is not None:
        try:
            file_values = tomllib.loads(config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigurationError(f"--config {config}: no such file") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigurationError(f"--config {config}: not valid TOML ({error})") from None
    try:
        from_environment = ServerSettings()
        merged = {**file_values, **from_environment.model_dump(exclude_unset=True), **flags}
        settings = ServerSettings.model_validate(merged)
        settings.configured_environments()
        return settings
    except ValidationError as error:
        raise ConfigurationError(_explain(error)) from None


_EXAMPLES = {
    "url": "DATAVERSE_URL=https://contoso.crm.dynamics.com",
    "auth": "DYNAMICS_MCP_AUTH=token",
    "read_only": "DYNAMICS_MCP_READ_ONLY=true",
    "connect_timeout": "DATAVERSE_CONNECT_TIMEOUT=10 (0: no limit)",
    "read_timeout": "DATAVERSE_READ_TIMEOUT=120 (0: no limit)",
    "max_concurrency": "DATAVERSE_MAX_CONCURRENCY=8 (1 to 52)",
    "authority_host": "AZURE_AUTHORITY_HOST=https://login.microsoftonline.com",
    "certificate_path": "AZURE_CLIENT_CERTIFICATE_PATH=/path/to/app.pem (key and certificate) or app.pfx",
    "discovery_url": "DATAVERSE_DISCOVERY_URL=https://globaldisco.crm.dynamics.com",
    "public_url": "DYNAMICS_MCP_PUBLIC_URL=https://mcp.contoso.com",
    "tool_scopes": 'DYNAMICS_MCP_TOOL_SCOPES={"delete_record": ["Records.Delete"]}',
}


def _field_of(name: str) -> str:
    """The settings field a variable name (or TOML key) sets."""
    for field_name, field in ServerSettings.model_fields.items():
        alias = field.validation_alias
        if name == field_name or (isinstance(alias, AliasChoices) and name in alias.choices):
            return field_name
    return name


def _explain(error: ValidationError) -> str:
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        setting = ".".join(str(part) for part in problem["loc"]) or "configuration"
        example = _EXAMPLES.get(_field_of(str(problem["loc"][0])) if problem["loc"] else "", "")
        hint = f" Example: {example}." if example else ""
        lines.append(f"{setting}: {problem['msg']}.{hint}")
    return "Invalid configuration: " + " ".join(lines)
