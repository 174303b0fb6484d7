"""A person's own sign-in, with a device code or in their web browser; later tokens come silently.

The person signs in once (`dynamics-mcp login`, or a browser opened when a token is first needed). MSAL keeps
the account and its refresh token in the token cache (persistent and encrypted, see `_cache.py`), so later
tokens, refreshed ones included, need nobody. `terminal` says whether someone reads stderr and can act on a
device code, as in `dynamics-mcp login`; in `serve` nobody does, and a sign-in that would need a device code
fails with what to run instead.

The browser sign-in is the authorization code flow with PKCE on a loopback redirect URI, through MSAL's
auth-code-flow calls rather than `acquire_token_interactive`, which picks the browser itself, listens on every
interface inside a container, and looks for the answer once a second.
"""

from __future__ import annotations

import sys
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, Final

from ._browser import Browser, system_browser
from ._errors import AuthError
from ._loopback import LoopbackReceiver
from ._providers import Authority, MsalApplication

SIGN_IN_TIMEOUT: Final = 300.0  # seconds a person gets to finish signing in in the browser


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # noqa: T201 - the person signing in reads it


def _sign_in_with_device_code(application: Any, scope: str, prompt: Callable[[str], None]) -> dict[str, Any]:
    flow = application.initiate_device_flow(scopes=[scope])
    if "user_code" not in flow:
        return dict(flow)
    prompt(str(flow["message"]))
    return dict(application.acquire_token_by_device_flow(flow))


class _SignedInUser(MsalApplication):
    """Silent tokens from the cache first; `_sign_in` only when the cache has no usable account."""

    def __init__(
        self,
        client_id: str,
        authority: Authority,
        *,
        cache: Any = None,
        prompt: Callable[[str], None] | None = None,
        on_cache_change: Callable[[], None] | None = None,
        terminal: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(client_id, authority, **options)
        self.cache = cache
        self.prompt = prompt or _to_stderr
        self.on_cache_change = on_cache_change or (lambda: None)
        self.terminal = terminal

    def _build(self) -> Any:
        import msal

        return msal.PublicClientApplication(self.client_id, token_cache=self.cache, **self._common())

    def _acquire(self, scope: str, force_refresh: bool) -> dict[str, Any]:
        application = self.application()
        try:
            for account in application.get_accounts():
                silent = application.acquire_token_silent([scope], account=account, force_refresh=force_refresh)
                if silent and "access_token" in silent:
                    return dict(silent)
            return self._sign_in(application, scope)
        finally:
            self.on_cache_change()

    def _no_user(self, scope: str, reason: str = "") -> AuthError:
        return AuthError(f"No signed-in user for {self.describe(scope)}{reason}: run `dynamics-mcp login` first.")

    @abstractmethod
    def _sign_in(self, application: Any, scope: str) -> dict[str, Any]:
        """MSAL's result of a new sign-in (runs in a worker thread)."""


class DeviceCodeCredential(_SignedInUser):
    """A user signed in with a device code: `prompt` (stderr) shows the URL and the code to enter there."""

    def _sign_in(self, application: Any, scope: str) -> dict[str, Any]:
        if not self.terminal:
            raise self._no_user(scope)
        return _sign_in_with_device_code(application, scope, self.prompt)


class InteractiveCredential(_SignedInUser):
    """A user signed in in their web browser; where none can be opened, at a terminal, with a device code.

    `find_browser` is asked at each sign-in (a test passes its own browser); `login_hint` pre-fills the
    account; `timeout` bounds the wait for the browser to come back.
    """

    def __init__(
        self,
        client_id: str,
        authority: Authority,
        *,
        login_hint: str | None = None,
        timeout: float = SIGN_IN_TIMEOUT,
        find_browser: Callable[[], Browser | None] = system_browser,
        **options: Any,
    ) -> None:
        super().__init__(client_id, authority, **options)
        self.login_hint = login_hint
        self.timeout = timeout
        self.find_browser = find_browser

    def _sign_in(self, application: Any, scope: str) -> dict[str, Any]:
        browser = self.find_browser()
        if browser is not None:
            result = self._sign_in_with_browser(application, scope, browser)
            if result is not None:
                return result
            reason = "the web browser could not be opened"
        else:
            reason = "no web browser can be opened here"
        if not self.terminal:
            raise self._no_user(scope, f", and {reason}")
        self.prompt(f"Signing in with a device code instead: {reason}.")
        return _sign_in_with_device_code(application, scope, self.prompt)

    def _sign_in_with_browser(self, application: Any, scope: str, browser: Browser) -> dict[str, Any] | None:
        """MSAL's result, or None when the browser did not open."""
        import webbrowser

        with LoopbackReceiver() as receiver:
            flow = application.initiate_auth_code_flow(
                [scope], redirect_uri=receiver.redirect_uri, login_hint=self.login_hint, response_mode="form_post"
            )
            receiver.expect(str(flow["state"]))
            self.prompt(f"Opening your web browser to sign in; waiting up to {self.timeout:g} seconds.")
            try:
                if not browser.open(str(flow["auth_uri"])):
                    return None
            except (OSError, webbrowser.Error):
                return None
            response = receiver.wait(self.timeout)
        if response is None:
            raise AuthError(
                f"The sign-in in the web browser did not finish within {self.timeout:g} seconds; "
                "run `dynamics-mcp login` to sign in again."
            )
        return dict(application.acquire_token_by_auth_code_flow(flow, response, scopes=[scope]))
