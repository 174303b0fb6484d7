"""What the tools reach at run time: the environments the caller may use, and the policy in force.

The server builds an `AppState` in its lifespan; tools read it from the request context. `Environments` is
a seam: stdio serves a fixed set of environments, streamable HTTP (later) one set per signed-in user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from dataverse import DataverseClient

from ._cursor import Cursors
from ._policy import Policy, PolicyError, TableAccess, TableRefused

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Environment:
    """One Dataverse environment the caller can use, with the client that reaches it as the caller."""

    name: str
    url: str
    friendly_name: str | None
    client: DataverseClient


class Environments(Protocol):
    async def all(self) -> list[Environment]:
        """Every environment the caller may use."""
        ...

    async def open(self, name: str | None) -> Environment:
        """The environment named (name, unique name or URL), or the only one; raises LookupError."""
        ...

    @property
    def caller(self) -> str:
        """Who the calls run as, for the audit log."""
        ...

    @property
    def caller_id(self) -> str:
        """A stable id of the caller (tenant and object id over HTTP): what cursors are bound to."""
        ...

    @property
    def default(self) -> str | None:
        """The environment tools use when none is named (name, unique name or URL), if one is set."""
        ...


@dataclass(frozen=True)
class AppState:
    environments: Environments
    policy: Policy
    cursors: Cursors = field(default_factory=Cursors.with_new_key)
    change_tokens: Cursors = field(default_factory=Cursors.with_new_key)  # list_changes tokens: they outlive a run
    _access: dict[str, TableAccess] = field(default_factory=dict)
    _reported: set[str] = field(default_factory=set)

    async def access(self, environment: Environment) -> TableAccess:
        """The table policy resolved for `environment`; a misconfigured one refuses that environment's tools."""
        access = self._access.get(environment.url)
        if access is not None:
            return access
        if not self.policy.lists_tables:
            access = TableAccess()
        else:
            try:
                access = self.policy.resolve(environment.name, await environment.client.list_tables())
            except PolicyError as error:
                if environment.url not in self._reported:
                    self._reported.add(environment.url)
                    logger.error("The table policy cannot be applied to %s: %s", environment.name, error)
                raise TableRefused(
                    f"The tools of environment {environment.name} are refused: this server's table allow or deny "
                    "list names a table it does not have. An administrator must fix the server's configuration."
                ) from None
        self._access[environment.url] = access
        return access


def default_environment(environments: list[Environment], default: str | None) -> Environment | None:
    """The environment tools use when none is named, if there is one."""
    try:
        return choose_environment(environments, None, default)
    except LookupError:
        return None


def choose_environment(environments: list[Environment], name: str | None, default: str | None = None) -> Environment:
    """The environment `name` (or else `default`) designates; raises LookupError saying what exists."""
    known = ", ".join(environment.name for environment in environments) or "none"
    if name is None or not name.strip():
        if len(environments) == 1:
            return environments[0]
        if default is None:
            raise LookupError(f"Several environments are available ({known}): pass environment.")
        name = default
    wanted = name.strip().rstrip("/").lower()
    for environment in environments:
        names = {environment.name.lower(), environment.url.rstrip("/").lower()}
        if environment.friendly_name:
            names.add(environment.friendly_name.lower())
        if wanted in names:
            return environment
    raise LookupError(f"No environment {name!r}; available: {known}. Use list_environments.")
