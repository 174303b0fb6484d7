"""The user's web browser, for a browser sign-in: found, or known to be missing, before anything waits on it.

A browser exists where one can be shown: `BROWSER` names one (as VS Code's remote sessions set it), or there
is a desktop (Windows, macOS, or `DISPLAY`/`WAYLAND_DISPLAY` elsewhere). Python's `webbrowser` then picks it.
Browsers that run in the terminal (lynx, w3m, ...) do not count: they would take over the terminal, or the
standard streams `serve` speaks MCP on. A command-line browser is started with its standard streams
detached: what it prints (Chrome's "Opening in existing browser session.") is not this program's output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

TERMINAL_BROWSERS: Final = frozenset({"www-browser", "links", "elinks", "lynx", "w3m"})
LAUNCH_WAIT: Final = 5.0  # seconds a command may take to report that it could not open the page


class Browser(Protocol):
    """Opens a URL for the person to interact with; False when it could not (a `webbrowser` controller fits)."""

    def open(self, url: str) -> bool: ...


@dataclass(frozen=True)
class CommandBrowser:
    """A browser started as a command line (`BROWSER`, xdg-open); `%s` in `arguments` becomes the URL."""

    arguments: tuple[str, ...]

    def open(self, url: str) -> bool:
        command = [argument.replace("%s", url) for argument in self.arguments]
        if not any("%s" in argument for argument in self.arguments):
            command.append(url)
        try:
            process = subprocess.Popen(  # noqa: S603 - the user's own browser command
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            return False
        try:
            return process.wait(LAUNCH_WAIT) == 0
        except subprocess.TimeoutExpired:
            return True  # still running: the browser itself, showing the page


def has_display() -> bool:
    """Whether a browser window could be shown to the person at this machine."""
    if os.environ.get("BROWSER"):
        return True
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def system_browser() -> Browser | None:
    """The person's web browser, or None where none can be shown (SSH session, container, service)."""
    if not has_display():
        return None
    import webbrowser  # imported where first used: start-up time is measured

    try:
        controller = webbrowser.get()
    except webbrowser.Error:
        return None
    if isinstance(controller, webbrowser.GenericBrowser):  # command lines, BackgroundBrowser included
        if Path(controller.name).name in TERMINAL_BROWSERS:
            return None
        return CommandBrowser((controller.name, *controller.args))
    return controller
