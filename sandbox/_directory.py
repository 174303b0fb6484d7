"""Who and what exists in the sandbox: the tenant, its users, their roles, and the environments.

Fixed identifiers keep every run identical, so a token minted by `dynamics-mcp sandbox token` today is
accepted by a sandbox started tomorrow from the same data directory.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Final, Literal

Role = Literal["System Administrator", "Salesperson", "Sales Reader"]

TENANT_ID: Final = uuid.UUID("7d5c1c3a-2b64-4d8f-9a51-3c0e8f2b6a10")
BUSINESS_UNIT_ID: Final = uuid.UUID("1b9e6a0c-7f2d-4e35-8c41-5d2a9f7e3b20")
USD_CURRENCY_ID: Final = uuid.UUID("4e1f2a3b-5c6d-4e7f-8a9b-0c1d2e3f4a50")


@dataclass(frozen=True)
class User:
    """A person in the tenant; `roles` maps the environments they belong to onto their security role."""

    name: str
    full_name: str
    object_id: uuid.UUID
    system_user_id: uuid.UUID
    roles: dict[str, Role] = field(default_factory=dict)
    application_id: uuid.UUID | None = None  # set for an application user: the app it stands for
    owns_seed_data: bool = True  # False: joined after the demo data was made, so owns none of it

    @property
    def upn(self) -> str:
        return f"{self.name}@contoso.example"

    def role_in(self, environment: str) -> Role | None:
        return self.roles.get(environment)


@dataclass(frozen=True)
class EnvironmentSpec:
    """One Dataverse environment (organization) the sandbox serves."""

    name: str
    friendly_name: str
    organization_id: uuid.UUID
    environment_id: uuid.UUID
    purpose: str
    rows_per_table: int


ENVIRONMENTS: Final = (
    EnvironmentSpec(
        "contoso",
        "Contoso Sales (production)",
        uuid.UUID("0c2f5a6e-1d3b-4c8a-9e7f-2a4b6c8d0e11"),
        uuid.UUID("9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c41"),
        "Production",
        rows_per_table=60,
    ),
    EnvironmentSpec(
        "fabrikam",
        "Fabrikam Dev (sandbox)",
        uuid.UUID("5d6e7f80-9a1b-4c2d-8e3f-4a5b6c7d8e22"),
        uuid.UUID("2b3c4d5e-6f70-4a81-9b2c-3d4e5f6a7b52"),
        "Sandbox",
        rows_per_table=15,
    ),
)


def _user(name: str, full_name: str, number: int, roles: dict[str, Role], *, owns_seed_data: bool = True) -> User:
    return User(
        name=name,
        full_name=full_name,
        object_id=uuid.UUID(f"a0000000-0000-4000-8000-{number:012d}"),
        system_user_id=uuid.UUID(f"b0000000-0000-4000-8000-{number:012d}"),
        roles=roles,
        owns_seed_data=owns_seed_data,
    )


# Sales staff who joined later: more users for tests of many concurrent callers, owning only what they create.
_NEW_HIRES: Final = (
    ("frank", "Frank Fisher"),
    ("grace", "Grace Gomez"),
    ("heidi", "Heidi Hall"),
    ("ivan", "Ivan Ito"),
    ("judy", "Judy Jones"),
    ("kevin", "Kevin Kim"),
)


USERS: Final = (
    _user("admin", "Avery Admin", 1, {"contoso": "System Administrator", "fabrikam": "System Administrator"}),
    _user("alice", "Alice Anders", 2, {"contoso": "Salesperson", "fabrikam": "Salesperson"}),
    _user("bob", "Bob Baker", 3, {"contoso": "Salesperson"}),
    _user("carol", "Carol Chen", 4, {"contoso": "Sales Reader"}),
    _user("dave", "Dave Diaz", 5, {"fabrikam": "Salesperson"}),
    _user("erin", "Erin Evans", 6, {}),
    *(
        _user(name, full_name, number, {"contoso": "Salesperson"}, owns_seed_data=False)
        for number, (name, full_name) in enumerate(_NEW_HIRES, start=7)
    ),
)


@dataclass(frozen=True)
class Application:
    """An app registration. A confidential one signs in with a secret or a certificate; `api` ones accept
    user tokens for on-behalf-of. Its service principal is an application user where it has a role.
    `redirect_uris` are where the authorization endpoint may send a signed-in user back to."""

    name: str
    client_id: uuid.UUID
    confidential: bool
    roles: dict[str, Role] = field(default_factory=dict)
    number: int = 0
    redirect_uris: tuple[str, ...] = ()

    @property
    def application_user(self) -> User:
        return User(
            name=self.name,
            full_name=f"# {self.name}",
            object_id=uuid.UUID(f"d0000000-0000-4000-8000-{self.number:012d}"),
            system_user_id=uuid.UUID(f"e0000000-0000-4000-8000-{self.number:012d}"),
            roles=self.roles,
            application_id=self.client_id,
        )


APPLICATIONS: Final = (
    Application(
        "integration-app",
        uuid.UUID("c0000000-0000-4000-8000-000000000001"),
        confidential=True,
        roles={"contoso": "System Administrator", "fabrikam": "System Administrator"},
        number=1,
    ),
    Application(
        "reporting-app", uuid.UUID("c0000000-0000-4000-8000-000000000002"), True, {"contoso": "Sales Reader"}, 2
    ),
    Application("mcp-server", uuid.UUID("c0000000-0000-4000-8000-000000000003"), confidential=True, number=3),
    # A desktop (public) client, registered as MSAL documents it: loopback redirect URIs, any port.
    Application(
        "mcp-client",
        uuid.UUID("c0000000-0000-4000-8000-000000000004"),
        confidential=False,
        number=4,
        redirect_uris=("http://localhost", "http://127.0.0.1"),
    ),
)
PRINCIPALS: Final = USERS + tuple(app.application_user for app in APPLICATIONS if app.roles)


def find_application(client_id: str) -> Application | None:
    wanted = client_id.strip().lower()
    return next((app for app in APPLICATIONS if str(app.client_id) == wanted or app.name == wanted), None)


def find_user(name_or_id: str) -> User | None:
    """A user or application user by short name, UPN, Entra object id or system user id."""
    wanted = name_or_id.lower()
    for user in PRINCIPALS:
        if wanted in (user.name, user.upn, str(user.object_id), str(user.system_user_id)):
            return user
    return None


def find_environment(name: str) -> EnvironmentSpec | None:
    return next((environment for environment in ENVIRONMENTS if environment.name == name), None)
