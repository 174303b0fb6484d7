"""Where dynamics-mcp keeps the sandboxes' data, and which process owns a data directory.

Only the standard library here: the command line imports this module to print its defaults in `--help`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Final

LOCK_FILE: Final = "in-use.lock"
# Windows locks byte ranges and refuses to read a locked one: lock a byte past the process id written at the start.
_LOCKED_OFFSET: Final = 64


def data_home() -> Path:
    """The user's data directory for dynamics-mcp (XDG: `$XDG_DATA_HOME`, else `~/.local/share`)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dynamics-mcp"


def default_sandbox_dir() -> Path:
    """What `dynamics-mcp sandbox` serves unless `--data` says otherwise."""
    return data_home() / "sandbox"


def embedded_sandbox_dir() -> Path:
    """What the zero-setup `serve` keeps between runs: beside `default_sandbox_dir()`, never inside it."""
    return data_home() / "embedded-sandbox"


class DataDirectoryLock:
    """An exclusive hold on a data directory, released by `release()` or however the process ends.

    The operating system's file lock (`flock`, `LockFileEx` on Windows) rather than a file that exists: a
    process that is killed leaves no stale lock behind.
    """

    def __init__(self, file: IO[str]) -> None:
        self._file = file

    @classmethod
    def acquire(cls, directory: Path) -> DataDirectoryLock | None:
        """The hold on `directory` (created if need be), or None while another process has it."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds keys and secrets (owner-only too)
        file = (directory / LOCK_FILE).open("a+", encoding="utf-8")
        try:
            _lock(file)
        except OSError:
            file.close()
            return None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        return cls(file)

    def release(self) -> None:
        self._file.close()  # closing the descriptor releases the lock


def holder(directory: Path) -> str:
    """The process id written by whoever holds `directory`, or "unknown"."""
    try:
        text = (directory / LOCK_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


if sys.platform == "win32":
    import msvcrt

    def _lock(file: IO[str]) -> None:
        file.seek(_LOCKED_OFFSET)
        msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _lock(file: IO[str]) -> None:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
