"""The key that signs `list_changes` tokens when DYNAMICS_MCP_CURSOR_KEY is not set, kept in the user's data directory.

A change token is what a workflow keeps between runs, and over stdio every session is a new server process: a key
made per process would turn yesterday's token into "not valid". The key is 32 random bytes in a file only its owner
may read, made once; two processes starting together agree on it (the file appears whole or not at all).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Final

KEY_FILE: Final = "change-token.key"
KEY_BYTES: Final = 32


def kept_key(directory: Path) -> bytes:
    """The key kept in `directory`, made the first time; OSError when it cannot be read or made."""
    path = directory / KEY_FILE
    if not path.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = directory / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_bytes(KEY_BYTES))
        try:
            os.link(draft, path)  # fails if another process made the key first: theirs is kept
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_bytes()
    if len(key) < KEY_BYTES:
        raise OSError(f"{path} holds no key (it is shorter than {KEY_BYTES} bytes); delete it to make a new one")
    return key
