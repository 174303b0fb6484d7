"""Where a browser sign-in comes back to: `http://localhost:<port>`, listening on 127.0.0.1 only.

A native app receives the authorization response on a loopback redirect URI (RFC 8252 §7.3); Entra ID accepts
any port on the `http://localhost` redirect URI registered for a public client. The receiver binds the
loopback address, never all interfaces (RFC 8252 §8.3), takes the response as a form post
(`response_mode=form_post`, so the code never sits in the browser's address bar or history), and accepts only
the response whose `state` is this sign-in's: anything else is refused and waiting goes on. It logs nothing,
since a request carries the code.
"""

from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qsl

MAX_BODY: Final = 64 * 1024
SIGNED_IN_PAGE: Final = "Signed in to dynamics-mcp. You can close this tab and return to your application."


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # seconds a connection may stall mid-request before it is dropped

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            self._answer(400, "This is not a sign-in response.")
            return
        fields = dict(parse_qsl(self.rfile.read(length).decode("utf-8", "replace"), keep_blank_values=True))
        if not self.server.receiver.accept(fields):
            self._answer(400, "This sign-in response is not for the sign-in in progress; it was ignored.")
        elif "error" in fields:
            self._answer(200, f"Sign-in failed: {fields.get('error_description') or fields['error']}")
        else:
            self._answer(200, SIGNED_IN_PAGE)

    def do_GET(self) -> None:
        self._answer(400, "dynamics-mcp takes the sign-in response as a form post (response_mode=form_post) only.")

    def _answer(self, status: int, text: str) -> None:
        body = f"<!DOCTYPE html><html><body><p>{html.escape(text.splitlines()[0])}</p></body></html>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the default writes each request line to stderr."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: LoopbackReceiver) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.receiver = receiver


class LoopbackReceiver:
    """Receives one authorization response; a context manager that stops listening on exit."""

    def __init__(self) -> None:
        self._state: str | None = None
        self._response: dict[str, str] | None = None
        self._received = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="sign-in-receiver", daemon=True
        )

    @property
    def redirect_uri(self) -> str:
        # `localhost`, as registered in Entra ID (its portal refuses http://127.0.0.1); the browser resolves it
        # to the loopback address this receiver listens on.
        return f"http://localhost:{self._server.server_address[1]}"

    def expect(self, state: str) -> None:
        """Accept only the response that carries `state` (the sign-in's CSRF protection)."""
        self._state = state

    def accept(self, fields: dict[str, str]) -> bool:
        if self._state is None or fields.get("state") != self._state or not ("code" in fields or "error" in fields):
            return False
        with self._lock:
            if self._response is None:
                self._response = fields
        self._received.set()
        return True

    def wait(self, timeout: float) -> dict[str, str] | None:
        """The authorization response, or None if none came within `timeout` seconds."""
        self._received.wait(timeout)
        return self._response

    def __enter__(self) -> LoopbackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
