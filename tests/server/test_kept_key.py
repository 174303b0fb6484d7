"""The key that signs change tokens when none is configured: kept owner-only in the data directory, made once."""

from __future__ import annotations

import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from server._kept_key import KEY_FILE, kept_key


def test_the_key_is_made_once_and_only_its_owner_may_read_it(tmp_path: Path) -> None:
    directory = tmp_path / "dynamics-mcp"
    first = kept_key(directory)
    assert len(first) == 32 and kept_key(directory) == first
    if sys.platform != "win32":
        assert stat.S_IMODE((directory / KEY_FILE).stat().st_mode) == 0o600
    assert [path.name for path in directory.iterdir()] == [KEY_FILE]  # no draft left behind


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: kept_key(tmp_path), range(16)))
    assert len(keys) == 1


def test_a_file_that_holds_no_key_is_an_error_saying_what_to_do(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_bytes(b"short")
    with pytest.raises(OSError, match="delete it to make a new one"):
        kept_key(tmp_path)
