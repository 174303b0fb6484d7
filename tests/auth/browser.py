"""A stand-in for the person's web browser at a sign-in, for the sandbox's identity provider.

The sandbox signs the user in with nobody at the page, so browsing comes down to what a browser does with its
answer: follow a redirect, or submit the auto-posting form of `response_mode=form_post` to its action, the
app's loopback receiver. `rewrite_url` and `rewrite_answer` let a test stand in the middle as an attacker.
Every request has a timeout, so a mistake fails the test instead of hanging it.

Also a command, for `BROWSER` in tests that run the CLI: `python -m tests.auth.browser --ca CA_FILE URL`;
`--chatty` makes it print to stdout first, as Chrome does ("Opening in existing browser session.").
"""

from __future__ import annotations

import argparse
import shlex
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import httpx2

TIMEOUT: Final = 10.0
ROOT: Final = Path(__file__).resolve().parents[2]


def browser_command(ca_file: Path, *options: str) -> dict[str, str]:
    """Environment variables that make Python's `webbrowser` (so the product) open pages with this module."""
    command = [sys.executable, "-m", "tests.auth.browser", "--ca", str(ca_file), *options, "%s"]
    return {"BROWSER": shlex.join(command), "PYTHONPATH": str(ROOT)}


class _FormReader(HTMLParser):
    """The first form of a page: its action and its hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and self.action is None:
            self.action = attributes.get("action", "")
        elif tag == "input" and attributes.get("type") == "hidden" and "name" in attributes:
            self.fields[attributes["name"]] = attributes.get("value", "")


def _unchanged_url(url: str) -> str:
    return url


def _unchanged_answer(answer: dict[str, str]) -> dict[str, str]:
    return answer


@dataclass
class SandboxBrowser:
    """Opens sign-in pages of the sandbox and hands their answer to the app; records what it saw."""

    ca_file: Path
    rewrite_url: Callable[[str], str] = _unchanged_url
    rewrite_answer: Callable[[dict[str, str]], dict[str, str]] = _unchanged_answer
    opened: list[str] = field(default_factory=list)
    answers: list[dict[str, str]] = field(default_factory=list)
    receiver_pages: list[str] = field(default_factory=list)

    def open(self, url: str) -> bool:
        self.opened.append(url)
        context = ssl.create_default_context(cafile=str(self.ca_file))
        with httpx2.Client(verify=context, timeout=TIMEOUT, trust_env=False) as client:
            page = client.get(self.rewrite_url(url))
            if page.is_redirect:  # response_mode=query: the answer rides on the redirect
                location = page.headers["location"]
                answer = self.rewrite_answer(dict(parse_qsl(urlsplit(location).query)))
                self.answers.append(answer)
                delivered = client.get(location.split("?", 1)[0], params=answer)
            else:  # response_mode=form_post: the page's script would submit its form
                form = _FormReader()
                form.feed(page.text)
                if form.action is None:
                    raise AssertionError(f"the sign-in page holds no form ({page.status_code}): {page.text[:300]}")
                answer = self.rewrite_answer(form.fields)
                self.answers.append(answer)
                delivered = client.post(form.action, data=answer)
        self.receiver_pages.append(delivered.text)
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description="Follow a sandbox sign-in URL as a browser would.")
    parser.add_argument("--ca", type=Path, required=True, help="the sandbox's CA certificate")
    parser.add_argument("--chatty", action="store_true", help="print to stdout, as real browsers do")
    parser.add_argument("url")
    arguments = parser.parse_args()
    if arguments.chatty:
        print("Opening in existing browser session.", flush=True)  # noqa: T201 - what the test guards against
    return 0 if SandboxBrowser(arguments.ca).open(arguments.url) else 1


if __name__ == "__main__":
    sys.exit(main())
