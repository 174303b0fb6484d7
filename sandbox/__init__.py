"""A local stand-in for the Dataverse Web API, Global Discovery and the token authority.

It stands in for Microsoft's services, so it shares no code with the client it tests: nothing here imports
`dataverse`, `auth`, `tools` or `server`.
"""

from ._app import RequestLog, RequestRecord, Sandbox, mint_token, read_endpoints
from ._certificates import TlsFiles
from ._directory import ENVIRONMENTS, TENANT_ID, USERS, EnvironmentSpec, User, find_user
from ._faults import Fault, FaultInjector, FaultKind
from ._identity import IdentitySecrets
from ._tokens import SigningKey, TokenRejected

__all__ = [
    "ENVIRONMENTS",
    "TENANT_ID",
    "USERS",
    "EnvironmentSpec",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "IdentitySecrets",
    "RequestLog",
    "RequestRecord",
    "Sandbox",
    "SigningKey",
    "TlsFiles",
    "TokenRejected",
    "User",
    "find_user",
    "mint_token",
    "read_endpoints",
]
