"""On-behalf-of for many users: one server credential, one token cache per signed-in user.

A server shared by many users holds one MSAL confidential client (built once) and, per user, a credential
whose tokens only that user's requests ever see. MSAL's own cache is not used: it would hold every user's
tokens in one place and grow with every incoming token; each user's Dataverse tokens live in that user's
`Credential` instead, kept for the most recently active users only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Final

from dataverse import ConnectionSettings

from ._certificate import ClientCertificate
from ._providers import Authority, Credential, MsalApplication

MAX_USERS: Final = 1000


def _discarding_cache() -> Any:
    import msal

    class DiscardingCache(msal.TokenCache):  # type: ignore[misc]
        """Tokens are kept per user by `UserCredential`, never in the shared application."""

        def add(self, event: Any, now: Any = None) -> None:
            return None

    return DiscardingCache()


class OnBehalfOfExchange(MsalApplication):
    """The server's own identity (secret or certificate) exchanging users' tokens for downstream tokens."""

    def __init__(
        self,
        client_id: str,
        client_credential: str | ClientCertificate,
        authority: Authority,
        *,
        connection: ConnectionSettings | None = None,
        ca_bundle: str | None = None,
        max_users: int = MAX_USERS,
    ) -> None:
        super().__init__(client_id, authority, connection=connection, ca_bundle=ca_bundle)
        self._client_credential = client_credential
        self._users: OrderedDict[str, UserCredential] = OrderedDict()
        self._max_users = max_users
        self._lock = threading.Lock()  # MSAL is built in a worker thread

    def _build(self) -> Any:
        import msal

        own = self._client_credential
        credential: str | dict[str, Any] = self._signed_with(own) if isinstance(own, ClientCertificate) else own
        return msal.ConfidentialClientApplication(
            self.client_id, client_credential=credential, token_cache=_discarding_cache(), **self._common()
        )

    def application(self) -> Any:
        with self._lock:
            return super().application()

    def for_user(self, user: str, assertion: str) -> UserCredential:
        """`user`'s credential (a stable key such as tenant/object id), holding their latest token."""
        credential = self._users.get(user)
        if credential is None:
            credential = self._users[user] = UserCredential(self)
            while len(self._users) > self._max_users:
                self._users.popitem(last=False)
        else:
            self._users.move_to_end(user)
        credential.assertion = assertion
        return credential

    def _acquire(self, scope: str, force_refresh: bool) -> dict[str, Any]:
        raise TypeError("exchange a user's token through for_user(...)")


class UserCredential(Credential):
    """One signed-in user's downstream tokens, obtained on their behalf with their latest incoming token."""

    def __init__(self, exchange: OnBehalfOfExchange) -> None:
        super().__init__()
        self._exchange = exchange
        self.assertion = ""

    def _acquire(self, scope: str, force_refresh: bool) -> dict[str, Any]:
        result: dict[str, Any] = self._exchange.application().acquire_token_on_behalf_of(self.assertion, [scope])
        return result


class OnBehalfOfCredential(UserCredential):
    """One given user's token (DYNAMICS_MCP_USER_ASSERTION) exchanged with the server's own credential."""

    def __init__(
        self,
        client_id: str,
        client_credential: str | ClientCertificate,
        authority: Authority,
        user_assertion: str,
        *,
        connection: ConnectionSettings | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        super().__init__(
            OnBehalfOfExchange(client_id, client_credential, authority, connection=connection, ca_bundle=ca_bundle)
        )
        self.assertion = user_assertion

    def close(self) -> None:
        self._exchange.close()
        super().close()
