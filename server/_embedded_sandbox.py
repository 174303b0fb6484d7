"""The zero-setup default: the embedded sandbox that `serve` runs when no environment is configured.

It keeps its data between runs in the user's data directory (`embedded_sandbox_dir()`): beside, not inside,
the directory `dynamics-mcp sandbox` serves by default, so an assistant's server and a sandbox started by hand
never contend for one directory, nor overwrite each other's `sandbox.json`.

It starts in the background, on a thread with an event loop of its own: `serve` answers `initialize` and
`tools/list` at once, and the first tool call waits until the sandbox listens (on a first run, until it has
seeded its demo data). Nothing the sandbox does, starting or serving, holds up the server's event loop.

One process at a time owns a data directory (`DataDirectoryLock`). SQLite alone would keep two writers' pages
intact, but the sandbox creates its keys, certificates and seed data on first start without expecting another
process to do the same; so a second `serve` started meanwhile (a second assistant or window) serves a
temporary copy of the data instead, and says so.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio
import anyio.from_thread
import anyio.to_thread

from dataverse import StaticTokenProvider, TransportError
from tools import Environment, choose_environment

from ._data_directory import DataDirectoryLock, holder

if TYPE_CHECKING:
    from sandbox import Sandbox

    from ._app import Connect

logger = logging.getLogger(__name__)

TOKEN_LIFETIME: Final = 86400 * 30  # seconds: longer than any one run of the server


@dataclass(frozen=True)
class ServedEnvironment:
    """One environment of the running sandbox, and a token it accepts from the configured user."""

    name: str
    url: str
    friendly_name: str
    token: str


class EmbeddedSandbox:
    """The sandbox on its own thread: started by `running_in_background`, awaited by `served()`."""

    def __init__(self, user: str, directory: Path | None, copy_of: Path | None = None) -> None:
        self.user = user
        self.directory = directory  # None: a temporary directory, with a copy of `copy_of`'s databases if given
        self.copy_of = copy_of
        self.environments: list[ServedEnvironment] = []
        self.failure: str | None = None
        self._ready = anyio.Event()
        self._guard = threading.Lock()
        self._stopping = False
        self._wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    async def served(self) -> list[ServedEnvironment]:
        """The environments once the sandbox listens; a TransportError if it could not start."""
        await self._ready.wait()
        if self.failure is not None:
            raise TransportError(
                f"The embedded sandbox could not start: {self.failure}",
                hint="The server's log (stderr) says more; fix what it names, then restart the server.",
            )
        return self.environments

    def stop(self) -> None:
        """Ask the sandbox to stop, from any thread, at any point of its start."""
        with self._guard:
            self._stopping = True
            if self._wake is not None:
                loop, wake = self._wake
                loop.call_soon_threadsafe(wake.set)

    def run(self) -> None:
        """Start, report readiness to the server's loop, serve until `stop()`: the body of the worker thread."""
        try:
            with ExitStack() as cleanup:
                data = self.directory
                if data is None:
                    data = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="dynamics-mcp-sandbox-")))
                    if self.copy_of is not None:
                        copy_databases(self.copy_of, data)
                with self._guard:
                    if self._stopping:  # the server stopped first: nothing to start for
                        return
                with asyncio.Runner() as runner:
                    sandbox = runner.run(self._start(data))
                    anyio.from_thread.run_sync(self._ready.set)
                    runner.run(self._serve_until_stopped(sandbox))
        except Exception as error:
            traceback = logger.isEnabledFor(logging.DEBUG)  # with --verbose
            if self.environments:  # it served, then failed to stop cleanly
                logger.error("The embedded sandbox did not stop cleanly: %s", error, exc_info=traceback)
            else:  # reported to every tool call, and once here
                self.failure = str(error) or type(error).__name__
                logger.error("The embedded sandbox could not start: %s", self.failure, exc_info=traceback)
        finally:
            anyio.from_thread.run_sync(self._ready.set)

    async def _start(self, data: Path) -> Sandbox:
        from sandbox import Sandbox  # only the zero-setup default needs it, and never on the server's thread

        sandbox = Sandbox(data)
        await sandbox.start()
        try:
            self.environments = [
                ServedEnvironment(
                    name,
                    environment.url,
                    environment.spec.friendly_name,
                    sandbox.token(self.user, name, lifetime=TOKEN_LIFETIME),
                )
                for name, environment in sandbox.environments.items()
            ]
        except BaseException:
            await sandbox.stop()
            raise
        logger.info(
            "The embedded sandbox is ready: %s",
            ", ".join(f"{environment.name} at {environment.url}" for environment in self.environments),
        )
        return sandbox

    async def _serve_until_stopped(self, sandbox: Sandbox) -> None:
        wake = asyncio.Event()
        with self._guard:
            self._wake = (asyncio.get_running_loop(), wake)
            if self._stopping:
                wake.set()
        try:
            await wake.wait()
        finally:
            with self._guard:
                self._wake = None
            await sandbox.stop()


def copy_databases(source: Path, target: Path) -> None:
    """A consistent copy of each SQLite database in `source`, while another process may be writing to it."""
    for path in sorted(source.glob("*.sqlite")):
        with (
            closing(sqlite3.connect(path)) as original,
            closing(sqlite3.connect(target / path.name)) as copy,
        ):
            original.backup(copy)


def claim(directory: Path, user: str) -> tuple[EmbeddedSandbox, DataDirectoryLock | None]:
    """The sandbox to run: on `directory` if this process can own it, else on a temporary copy. Said on stderr."""
    serving = (
        "No Dataverse environment is configured (DATAVERSE_URL): serving the embedded sandbox with demo data, "
        f"as user '{user}'."
    )
    try:
        lock = DataDirectoryLock.acquire(directory)
    except OSError as error:
        logger.warning(
            "%s Its data cannot be kept in %s (%s): this run's changes are discarded when it stops.",
            serving,
            directory,
            error.strerror or error,
        )
        return EmbeddedSandbox(user, None), None
    if lock is None:
        logger.warning(
            "%s Its data in %s is in use by another dynamics-mcp process (pid %s): this one serves a temporary "
            "copy, and its changes are discarded when it stops.",
            serving,
            directory,
            holder(directory),
        )
        return EmbeddedSandbox(user, None, copy_of=directory), None
    logger.warning(
        "%s Its data is kept between runs in %s; to start again from the demo data, stop dynamics-mcp and "
        "delete that directory.",
        serving,
        directory,
    )
    return EmbeddedSandbox(user, directory), lock


@asynccontextmanager
async def running_in_background(directory: Path, user: str) -> AsyncIterator[EmbeddedSandbox]:
    """The embedded sandbox, starting on a worker thread; stopped, and its directory released, on exit."""
    sandbox, lock = claim(directory, user)
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(anyio.to_thread.run_sync, sandbox.run)
            try:
                yield sandbox
            finally:
                sandbox.stop()
    finally:
        if lock is not None:
            lock.release()


class SandboxEnvironments:
    """`tools.Environments` of the embedded sandbox: known once it listens, so each call waits for that."""

    def __init__(self, sandbox: EmbeddedSandbox, connect: Connect, default: str | None) -> None:
        self.sandbox = sandbox
        self.connect = connect
        self.default = default
        self._environments: list[Environment] | None = None

    async def all(self) -> list[Environment]:
        served = await self.sandbox.served()
        if self._environments is None:
            self._environments = [
                Environment(
                    environment.name,
                    environment.url,
                    environment.friendly_name,
                    self.connect(environment.url, "v9.2", StaticTokenProvider(environment.token)),
                )
                for environment in served
            ]
        return list(self._environments)

    async def open(self, name: str | None) -> Environment:
        return choose_environment(await self.all(), name, self.default)

    @property
    def caller(self) -> str:
        return f"sandbox:{self.sandbox.user}"

    @property
    def caller_id(self) -> str:
        return self.caller
