"""The one pooled HTTP client of a process, configured as the connection settings say.

Timeouts follow the convention integration platforms use: unset keeps the default, `0` means no limit. The
proxy and CA bundle may be given explicitly; otherwise the standard environment variables apply
(`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, `SSL_CERT_FILE`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx2

DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_READ_TIMEOUT: Final = 120.0  # Dataverse ends a request after 2 minutes itself
POOL_SIZE: Final = 100


@dataclass(frozen=True)
class ConnectionSettings:
    connect_timeout: float | None = None
    read_timeout: float | None = None
    proxy: str | None = None
    ca_bundle: Path | None = None

    def timeout(self) -> httpx2.Timeout:
        connect = _seconds(self.connect_timeout, DEFAULT_CONNECT_TIMEOUT)
        read = _seconds(self.read_timeout, DEFAULT_READ_TIMEOUT)
        return httpx2.Timeout(connect=connect, read=read, write=read, pool=connect)


def _seconds(value: float | None, default: float) -> float | None:
    if value is None:
        return default
    if value < 0:
        raise ValueError(f"a timeout is 0 (no limit) or a positive number of seconds, not {value}")
    return None if value == 0 else value


def build_http_client(settings: ConnectionSettings | None = None) -> httpx2.AsyncClient:
    """The process's pooled client; the caller closes it (the server's lifespan does)."""
    settings = settings or ConnectionSettings()
    verify: ssl.SSLContext | bool = True
    if settings.ca_bundle is not None:
        if not settings.ca_bundle.is_file():
            raise ValueError(f"the CA bundle {settings.ca_bundle} does not exist or is not a file")
        verify = ssl.create_default_context(cafile=str(settings.ca_bundle))
    return httpx2.AsyncClient(
        timeout=settings.timeout(),
        proxy=settings.proxy,
        verify=verify,
        trust_env=True,
        limits=httpx2.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
        follow_redirects=False,
    )
