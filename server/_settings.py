"""Configuration: environment variables (names shared with azure-identity), a TOML file, command-line flags.

Flags win over environment variables, which win over the TOML file. Each setting is read from one variable, its
documented name (the field's validation alias), and from the file and flags under its field name: never from a
variable named like the field (URL, USERNAME, READ_ONLY), which a shell, Windows or a model may set. A
configuration error names the setting, what was wrong, and an example of a right value; secrets never appear in
a message.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from dataverse import ConnectionSettings, api_base_url

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


CURSOR_KEY_LENGTH: Final = 32


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
    # Flags and TOML keys are field names (validate_by_name); the environment is read by _DocumentedVariables.
    model_config = SettingsConfigDict(
        extra="ignore", validate_by_name=True, validate_by_alias=True, case_sensitive=True
    )

    url: str | None = Field(None, validation_alias="DATAVERSE_URL")
    api_version: str = Field("v9.2", validation_alias="DATAVERSE_API_VERSION")
    access_token: SecretStr | None = Field(None, validation_alias="DATAVERSE_ACCESS_TOKEN")
    auth: AuthMode | None = Field(None, validation_alias="DYNAMICS_MCP_AUTH")
    environments: list[EnvironmentSettings] = Field(default_factory=list)  # no variable: the TOML file's
    default_environment: str | None = Field(None, validation_alias="DYNAMICS_MCP_DEFAULT_ENVIRONMENT")
    read_only: bool = Field(False, validation_alias="DYNAMICS_MCP_READ_ONLY")
    allowed_tables: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias="DYNAMICS_MCP_ALLOWED_TABLES"
    )
    denied_tables: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias="DYNAMICS_MCP_DENIED_TABLES"
    )
    # Actions and functions by name (list_actions); trusted actions run without asking the user.
    allowed_actions: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias="DYNAMICS_MCP_ALLOWED_ACTIONS"
    )
    denied_actions: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias="DYNAMICS_MCP_DENIED_ACTIONS"
    )
    trusted_actions: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias="DYNAMICS_MCP_TRUSTED_ACTIONS"
    )
    connect_timeout: float | None = Field(None, ge=0, validation_alias="DATAVERSE_CONNECT_TIMEOUT")
    read_timeout: float | None = Field(None, ge=0, validation_alias="DATAVERSE_READ_TIMEOUT")
    max_concurrency: int = Field(52, ge=1, le=52, validation_alias="DATAVERSE_MAX_CONCURRENCY")
    # Writes one write_records call may carry; a $batch holds at most 1,000 requests.
    max_writes: int = Field(1000, ge=1, le=1000, validation_alias="DYNAMICS_MCP_MAX_WRITES")
    sandbox_user: str = Field("admin", validation_alias="DYNAMICS_MCP_SANDBOX_USER")
    tenant_id: str | None = Field(None, validation_alias="AZURE_TENANT_ID")
    client_id: str | None = Field(None, validation_alias="AZURE_CLIENT_ID")
    client_secret: SecretStr | None = Field(None, validation_alias="AZURE_CLIENT_SECRET")
    certificate_path: Path | None = Field(None, validation_alias="AZURE_CLIENT_CERTIFICATE_PATH")
    certificate_password: SecretStr | None = Field(None, validation_alias="AZURE_CLIENT_CERTIFICATE_PASSWORD")
    send_certificate_chain: bool = Field(False, validation_alias="AZURE_CLIENT_SEND_CERTIFICATE_CHAIN")
    authority_host: str = Field("https://login.microsoftonline.com", validation_alias="AZURE_AUTHORITY_HOST")
    username: str | None = Field(None, validation_alias="AZURE_USERNAME")
    password: SecretStr | None = Field(None, validation_alias="AZURE_PASSWORD")
    user_assertion: SecretStr | None = Field(None, validation_alias="DYNAMICS_MCP_USER_ASSERTION")
    ca_bundle: Path | None = Field(None, validation_alias="SSL_CERT_FILE")
    # No variable of its own: unset, httpx honours HTTPS_PROXY, HTTP_PROXY and NO_PROXY.
    proxy: str | None = None
    token_cache: Path | None = Field(None, validation_alias="DYNAMICS_MCP_TOKEN_CACHE")
    discovery_url: str | None = Field(None, validation_alias="DATAVERSE_DISCOVERY_URL")
    audience: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias="DYNAMICS_MCP_AUDIENCE")
    public_url: str | None = Field(None, validation_alias="DYNAMICS_MCP_PUBLIC_URL")
    allowed_hosts: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias="DYNAMICS_MCP_ALLOWED_HOSTS"
    )
    allowed_origins: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias="DYNAMICS_MCP_ALLOWED_ORIGINS"
    )
    allowed_tenants: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias="DYNAMICS_MCP_ALLOWED_TENANTS"
    )
    required_scopes: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias="DYNAMICS_MCP_REQUIRED_SCOPES")
    tool_scopes: dict[str, frozenset[str]] = Field(default_factory=dict, validation_alias="DYNAMICS_MCP_TOOL_SCOPES")
    toolsets: Annotated[frozenset[str], NoDecode] = Field(frozenset(), validation_alias="DYNAMICS_MCP_TOOLSETS")
    # Authenticates paging cursors; replicas behind one load balancer share it.
    cursor_key: SecretStr | None = Field(None, validation_alias="DYNAMICS_MCP_CURSOR_KEY")

    @field_validator("discovery_url", "public_url")
    @classmethod
    def valid_service_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url.rstrip("/")

    @field_validator("proxy")
    @classmethod
    def valid_proxy(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Not quoted: a proxy URL may hold a password.
            raise ValueError("not a proxy URL such as http://proxy.contoso.com:8080")
        return url

    @field_validator("ca_bundle")
    @classmethod
    def existing_ca_bundle(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"{path} does not exist or is not a file")
        return path

    @field_validator("cursor_key")
    @classmethod
    def long_cursor_key(cls, key: SecretStr | None) -> SecretStr | None:
        # Hashed into the key that signs cursors: shorter is guessable.
        if key is not None and len(key.get_secret_value()) < CURSOR_KEY_LENGTH:
            raise ValueError(f"the key needs at least {CURSOR_KEY_LENGTH} characters")
        return key

    @field_validator("toolsets")
    @classmethod
    def known_toolsets(cls, toolsets: frozenset[str]) -> frozenset[str]:
        from tools import TOOLSETS

        unknown = sorted(toolsets - set(TOOLSETS))
        if unknown:
            raise ValueError(f"no toolset named {', '.join(unknown)}; the toolsets are {', '.join(TOOLSETS)}")
        return toolsets

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
        "allowed_tables",
        "denied_tables",
        "allowed_actions",
        "denied_actions",
        "trusted_actions",
        "toolsets",
        "allowed_hosts",
        "allowed_origins",
        "allowed_tenants",
        mode="before",
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
        # Flags, then variables, then the TOML file (model_config's toml_file: see load_settings). No .env file
        # and no secrets directory: nothing is read that the README does not name.
        return init_settings, _DocumentedVariables(settings_cls), _TomlFile(settings_cls)

    def connection(self) -> ConnectionSettings:
        """How every HTTP client of the server connects: to Dataverse, discovery, the authority, its keys."""
        return ConnectionSettings(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            proxy=self.proxy,
            ca_bundle=self.ca_bundle,
        )

    def configured_environments(self) -> list[EnvironmentSettings]:
        """The environments to serve: the TOML file's, or the one DATAVERSE_URL names; none means the sandbox."""
        if self.environments:
            return self.environments
        if self.url:
            return [EnvironmentSettings(url=self.url, api_version=self.api_version, access_token=self.access_token)]
        return []


class _DocumentedVariables(EnvSettingsSource):
    """Environment variables: each setting from its documented name, the field's validation alias, only.

    pydantic-settings' own source also reads a variable named like the field when fields may be set by name (as
    flags and TOML keys are); a setting with no variable of its own (environments, proxy) is not read at all.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = field.validation_alias
        if not isinstance(variable, str):
            return None, field_name, False
        # Not case-sensitive only where the environment is not (Windows).
        return self.env_vars.get(variable if self.case_sensitive else variable.lower()), variable, False


class _TomlFile(TomlConfigSettingsSource):
    """The TOML file: each setting under its field name, the lower-case key the README shows; nothing else."""

    def __call__(self) -> dict[str, Any]:
        unknown = sorted(set(self.toml_data) - set(self.settings_cls.model_fields))
        if unknown:
            names = ", ".join(
                key if _field_of(key) == key else f"{key} (the key is {_field_of(key)})" for key in unknown
            )
            raise ConfigurationError(
                f"--config {self.toml_file_path}: no setting is named {names}; the keys are the lower-case names "
                "of the README's Configuration table, e.g. read_only = true"
            )
        return super().__call__()


def _reading(config: Path) -> type[ServerSettings]:
    """ServerSettings whose lowest source is the TOML file `config`."""

    class FileSettings(ServerSettings):
        model_config = SettingsConfigDict(toml_file=config)

    return FileSettings


def load_settings(config: Path | None = None, **flags: Any) -> ServerSettings:
    """Settings from the TOML file (lowest), the environment, then flags (by field name); raises
    ConfigurationError."""
    if config is not None and not config.is_file():
        raise ConfigurationError(f"--config {config}: no such file")
    try:
        settings = (ServerSettings if config is None else _reading(config))(**flags)
        settings.configured_environments()
        return settings
    except ValidationError as error:
        raise ConfigurationError(_explain(error)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"--config {config}: not valid TOML ({error})") from None
    except OSError as error:
        raise ConfigurationError(f"--config {config}: cannot be read ({error.strerror or error})") from None


_EXAMPLES = {
    "url": "DATAVERSE_URL=https://contoso.crm.dynamics.com",
    "auth": "DYNAMICS_MCP_AUTH=token",
    "read_only": "DYNAMICS_MCP_READ_ONLY=true",
    "connect_timeout": "DATAVERSE_CONNECT_TIMEOUT=10 (0: no limit)",
    "read_timeout": "DATAVERSE_READ_TIMEOUT=120 (0: no limit)",
    "max_concurrency": "DATAVERSE_MAX_CONCURRENCY=8 (1 to 52)",
    "max_writes": "DYNAMICS_MCP_MAX_WRITES=200 (1 to 1000)",
    "authority_host": "AZURE_AUTHORITY_HOST=https://login.microsoftonline.com",
    "certificate_path": "AZURE_CLIENT_CERTIFICATE_PATH=/path/to/app.pem (key and certificate) or app.pfx",
    "discovery_url": "DATAVERSE_DISCOVERY_URL=https://globaldisco.crm.dynamics.com",
    "public_url": "DYNAMICS_MCP_PUBLIC_URL=https://mcp.contoso.com",
    "tool_scopes": 'DYNAMICS_MCP_TOOL_SCOPES={"delete_record": ["Records.Delete"]}',
    "toolsets": "DYNAMICS_MCP_TOOLSETS=records,bulk,actions",
    "ca_bundle": "SSL_CERT_FILE=/path/to/ca-bundle.pem",
    "proxy": 'proxy = "http://proxy.contoso.com:8080" in the TOML file',
    "cursor_key": (
        "DYNAMICS_MCP_CURSOR_KEY=<32+ random characters, e.g. from: "
        'python -c "import secrets; print(secrets.token_urlsafe(32))">'
    ),
}


def _field_of(name: str) -> str:
    """The settings field a variable name (or TOML key) sets."""
    for field_name, field in ServerSettings.model_fields.items():
        if name in (field_name, field.validation_alias):
            return field_name
    return name


def _label(name: str) -> str:
    """A setting as the user may have written it: `DATAVERSE_URL (url)`, its variable and its TOML key."""
    field_name = _field_of(name)
    field = ServerSettings.model_fields.get(field_name)
    variable = field.validation_alias if field is not None else None
    return f"{variable} ({field_name})" if isinstance(variable, str) else field_name


def _explain(error: ValidationError) -> str:
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        location = [str(part) for part in problem["loc"]]
        setting = ".".join([_label(location[0]), *location[1:]]) if location else "configuration"
        example = _EXAMPLES.get(_field_of(location[0]) if location else "", "")
        hint = f" Example: {example}." if example else ""
        lines.append(f"{setting}: {problem['msg']}.{hint}")
    return "Invalid configuration: " + " ".join(lines)
