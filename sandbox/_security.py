"""Who is calling and what their security role lets them see and change.

Three roles model Dataverse's record-level security closely enough for the product's tests:
    System Administrator  reads and writes every row
    Salesperson           reads and writes the rows they own (user-level privileges), creates rows
    Sales Reader          reads every row, writes nothing
Organization- and business-owned tables (products, users, currencies) are readable by all, writable by the
administrator only. Linking rows takes Append on a row and Append To on the row it is linked to (both rows are
appended in an N:N link), at the same depth as writing. Failures carry Dataverse's privilege and access-check errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._catalog import Table
from ._directory import Role, User
from ._errors import ACCESS_DENIED, PRIVILEGE_DENIED, WebApiError
from ._store import StoredRow, quote

Access = Literal["Read", "Create", "Write", "Delete", "Append", "AppendTo"]


@dataclass(frozen=True)
class Caller:
    """The user a request runs as in one environment."""

    user: User
    role: Role
    environment: str

    @property
    def system_user_id(self) -> str:
        return str(self.user.system_user_id)

    @property
    def is_admin(self) -> bool:
        return self.role == "System Administrator"

    def visibility(self, table: Table, alias: str) -> tuple[str, list[object]]:
        """An SQL condition limiting `table` (as `alias`) to the rows this caller may read."""
        if self.role == "Salesperson" and table.is_user_owned:
            return f"{quote(alias)}.{quote('owninguser')} = ?", [self.system_user_id]
        return "", []

    def can_read(self, table: Table, row: StoredRow) -> bool:
        if self.role == "Salesperson" and table.is_user_owned:
            return row.get("owninguser") == self.system_user_id
        return True

    def require_privilege(self, table: Table, access: Access) -> None:
        """Raise the missing-privilege error when the role lacks `access` on the table at any depth."""
        if access == "Read" or self.is_admin:
            return
        if self.role == "Salesperson" and table.is_user_owned:
            return
        privilege = f"prv{access}"
        raise WebApiError(
            403,
            PRIVILEGE_DENIED,
            f"Principal user (Id={self.system_user_id}, type=8, roleCount=1, privilegeCount=0, accessMode=0), "
            f"is missing {privilege}{table.display_name.replace(' ', '')} privilege on OTC={table.object_type_code} "
            f"for entity '{table.logical_name}'. context.Caller={self.system_user_id}",
        )

    def require_access(self, table: Table, row: StoredRow, access: Access) -> None:
        """Raise the access-check error when this row is outside what the caller may touch."""
        self.require_privilege(table, access)
        if self.can_read(table, row):
            return
        row_id = row[table.primary_id]
        raise WebApiError(
            403,
            ACCESS_DENIED,
            f"Principal user (Id={self.system_user_id}) does not have {access}Access right(s) for record with "
            f"Id = {row_id} of entity {table.logical_name}.",
        )
