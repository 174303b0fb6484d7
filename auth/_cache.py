"""The delegated user's token cache, persisted encrypted at rest.

MSAL's serializable cache is encrypted with Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`)
before it touches the disk. The key lives apart from the cache: in `DYNAMICS_MCP_CACHE_KEY` when set, else
in an owner-only key file under the user's configuration directory, while the cache goes under the cache
directory. A cache file that is copied, synced or backed up without the key reveals no token; the key file
protects as much as the user's account does (see docs/authentication.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from ._errors import AuthError


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    temporary.replace(path)


def default_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dynamics-mcp" / "token-cache.bin"


def default_key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dynamics-mcp" / "token-cache.key"


class EncryptedTokenCache:
    """An MSAL token cache loaded from, and saved to, an encrypted file."""

    def __init__(self, path: Path | None = None, key_path: Path | None = None, key: bytes | None = None) -> None:
        self.path = path or default_cache_path()
        self.key_path = key_path or default_key_path()
        environment_key = os.environ.get("DYNAMICS_MCP_CACHE_KEY")
        self._fernet = Fernet(key or (environment_key.encode() if environment_key else self._load_or_create_key()))
        import msal  # imported where first used: start-up time is measured

        self.cache: Any = msal.SerializableTokenCache()
        if self.path.exists():
            try:
                self.cache.deserialize(self._fernet.decrypt(self.path.read_bytes()).decode())
            except InvalidToken:
                raise AuthError(
                    f"The token cache {self.path} cannot be decrypted with this key; delete it and sign in again."
                ) from None

    def _load_or_create_key(self) -> bytes:
        if self.key_path.exists():
            return self.key_path.read_bytes().strip()
        key = Fernet.generate_key()
        _write_private(self.key_path, key)
        return key

    def save(self) -> None:
        """Write the cache if MSAL changed it (a new sign-in or a refreshed token)."""
        if self.cache.has_state_changed:
            _write_private(self.path, self._fernet.encrypt(self.cache.serialize().encode()))
            self.cache.has_state_changed = False
