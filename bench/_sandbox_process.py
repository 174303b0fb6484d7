"""The sandbox in its own process, so that its work and its memory are not counted with what is measured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import IO

from sandbox import SigningKey, mint_token, read_endpoints


class SandboxProcess:
    """`dynamics-mcp sandbox --data DIR` as a child process, stopped on exit."""

    def __init__(self, data_dir: Path, *, extra_accounts: int = 0) -> None:
        self.data_dir = data_dir
        self.extra_accounts = extra_accounts
        self._process: subprocess.Popen[str] | None = None
        self._urls: dict[str, str] = {}
        self._authority = ""

    def __enter__(self) -> SandboxProcess:
        command = [sys.executable, "-m", "server", "sandbox", "--data", str(self.data_dir)]
        if self.extra_accounts:
            command += ["--large", str(self.extra_accounts)]
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self._process.stdout is not None
        self._wait_until_listening(self._process.stdout)
        endpoints = read_endpoints(self.data_dir)
        self._urls = dict(endpoints["environments"])
        self._authority = str(endpoints["authority"])
        return self

    def _wait_until_listening(self, stdout: IO[str]) -> None:
        # The command prints its endpoints once listening; the last line names the token command.
        for line in stdout:
            if line.startswith("token:"):
                return
        raise RuntimeError("the sandbox exited before listening")

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._process is None:
            return
        self._process.terminate()  # uvicorn stops gracefully on SIGTERM (SIGINT is ignored in background jobs)
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def url(self, environment: str = "contoso") -> str:
        return self._urls[environment]

    def token(self, user: str = "admin", environment: str = "contoso") -> str:
        """A bearer token the environment accepts, valid for a day."""
        key = SigningKey.load_or_create(self.data_dir)
        return mint_token(key, user, self.url(environment), self._authority, lifetime=86400)
