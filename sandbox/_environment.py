"""One served environment: its URL, store and catalog, and the row operations the Web API performs on them.

The HTTP layer (`_webapi.py`) parses requests and shapes responses; this module owns what happens to rows:
locating them by id or alternate key, security checks, the platform's defaults on create, row versions.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ._associate import forget_links
from ._catalog import Catalog, Table
from ._directory import BUSINESS_UNIT_ID, USD_CURRENCY_ID, EnvironmentSpec
from ._errors import (
    WebApiError,
    bad_request,
    duplicate_key,
    etag_mismatch,
    not_found,
    not_found_by_key,
    resource_not_found,
)
from ._expression import Value, format_datetime, storage_value
from ._odata import parse_key
from ._records import etag, read_body
from ._security import Caller
from ._store import Store, StoredRow, StoredValue, target_column

RowKey = uuid.UUID | dict[str, Value]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Environment:
    """A Dataverse organization served at `url`."""

    spec: EnvironmentSpec
    url: str
    store: Store
    dop_hint: int = 4
    clock: Callable[[], datetime] = utc_now  # what "now" is: row timestamps and relative dates in $filter
    metadata_padding_mb: int = 0  # synthetic tables declared in $metadata until it is this large (benchmarks)
    expire_change_tracking_in_days: int = 7  # the organization's ExpireChangeTrackingInDays: a delta link's life

    @property
    def catalog(self) -> Catalog:
        return self.store.catalog

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/data/v9.2"

    def table_for_entity_set(self, entity_set: str) -> Table:
        table = self.catalog.by_entity_set(entity_set)
        if table is None:
            raise resource_not_found(entity_set)
        return table

    def primary_name(self, target: str, row_id: str) -> str | None:
        table = self.catalog.get(target)
        if table is None:
            return None
        row = self.store.get(table, row_id)
        value = row.get(table.primary_name) if row else None
        return None if value is None else str(value)

    # -- locating rows -----------------------------------------------------------------------------------

    def key_values(self, table: Table, key: Mapping[str, Value]) -> dict[str, StoredValue]:
        """Alternate-key values in stored form; the columns must form one of the table's keys."""
        columns = {}
        for name, value in key.items():
            column = table.column_by_property(name)
            if column is None:
                raise bad_request(f"Invalid key: '{name}' is not a column of '{table.logical_name}'.")
            columns[column.logical_name] = storage_value(column, value)
        if not any(set(alternate.columns) == set(columns) for alternate in table.keys):
            declared = "; ".join(",".join(alternate.columns) for alternate in table.keys) or "none"
            raise WebApiError(
                400,
                "0x80060891",
                f"The key attributes ({','.join(columns)}) are not an alternate key of entity "
                f"'{table.logical_name}'. Keys defined: {declared}.",
            )
        return columns

    def find(self, table: Table, key: RowKey) -> StoredRow | None:
        if isinstance(key, uuid.UUID):
            return self.store.get(table, str(key))
        return self.store.find_by_key(table, self.key_values(table, key))

    def require(self, table: Table, key: RowKey) -> StoredRow:
        row = self.find(table, key)
        if row is None:
            raise (
                not_found(table.logical_name, str(key))
                if isinstance(key, uuid.UUID)
                else not_found_by_key(table.logical_name, ",".join(f"{k}={v}" for k, v in key.items()))
            )
        return row

    # -- writes ------------------------------------------------------------------------------------------

    def resolve_bind(self, reference: str) -> tuple[Table, str]:
        """The row a `@odata.bind` value names: `/contacts(<id>)`, `contacts(<id>)` or a full URL."""
        path = reference
        if "://" in path:
            path = path.split("/api/data/", 1)[-1].split("/", 1)[-1]
        path = path.lstrip("/")
        if not path.endswith(")") or "(" not in path:
            raise bad_request(f"The @odata.bind value '{reference}' is not a URL such as '/contacts(<id>)'.")
        entity_set, _, key_text = path[:-1].partition("(")
        table = self.table_for_entity_set(entity_set)
        row = self.require(table, parse_key(key_text))
        return table, str(row[table.primary_id])

    def _now(self) -> str:
        return format_datetime(self.clock())

    def create(
        self, table: Table, body: Any, caller: Caller, key: RowKey | None = None, *, read_back: bool = True
    ) -> StoredRow:
        """Insert a row from a request body, as Dataverse does on POST (or PATCH to a missing row).

        `read_back`: return the row as stored (every column); else the values written, for a caller that needs
        only the id (CreateMultiple answers ids).
        """
        caller.require_privilege(table, "Create")
        row = read_body(table, body, creating=True, resolve_bind=self.resolve_bind)
        if isinstance(key, uuid.UUID):
            row[table.primary_id] = str(key)
        elif key is not None:
            row.update(self.key_values(table, key))
        row.setdefault(table.primary_id, str(uuid.uuid4()))
        now, user = self._now(), caller.system_user_id
        row.update(createdon=now, modifiedon=now, createdby=user, modifiedby=user)
        if table.is_user_owned:
            if row.get("ownerid") is None:
                row["ownerid"] = user
                row["ownerid__target"] = "systemuser"
            self._require_assign(table, row["ownerid"], caller)
            row["owninguser"] = row["ownerid"]
            row["owningbusinessunit"] = str(BUSINESS_UNIT_ID)
        if row.get("statecode") is None and "statecode" in table.columns:
            row["statecode"] = 0
        if row.get("statuscode") is None and "statuscode" in table.columns:
            row["statuscode"] = self._default_status(table, int(row.get("statecode") or 0))
        if "transactioncurrencyid" in table.columns and row.get("transactioncurrencyid") is None:
            row["transactioncurrencyid"] = str(USD_CURRENCY_ID)
        self._derive(table, row)
        self._check_required(table, row)
        with self.store.transaction():
            row["versionnumber"] = self.store.next_version()
            try:
                self.store.insert(table, row)
            except sqlite3.IntegrityError:
                raise duplicate_key() from None
        if not read_back:
            return row
        stored = self.store.get(table, str(row[table.primary_id]))
        assert stored is not None
        return stored

    def update(self, table: Table, existing: StoredRow, body: Any, caller: Caller) -> StoredRow:
        caller.require_access(table, existing, "Write")
        changes = read_body(table, body, creating=False, resolve_bind=self.resolve_bind)
        if "ownerid" in changes:
            self._require_assign(table, changes["ownerid"], caller)
            changes["owninguser"] = changes["ownerid"]
        if "statecode" in changes and "statuscode" not in changes and changes["statecode"] is not None:
            changes["statuscode"] = self._default_status(table, int(changes["statecode"]))
        merged = {**existing, **changes}
        self._derive(table, merged)
        for name in ("fullname",):
            if name in table.columns and merged.get(name) != existing.get(name):
                changes[name] = merged[name]
        changes.update(modifiedon=self._now(), modifiedby=caller.system_user_id)
        row_id = str(existing[table.primary_id])
        with self.store.transaction():
            changes["versionnumber"] = self.store.next_version()
            try:
                self.store.update(table, row_id, changes)
            except sqlite3.IntegrityError:
                raise duplicate_key() from None
        stored = self.store.get(table, row_id)
        assert stored is not None
        return stored

    def delete(self, table: Table, existing: StoredRow, caller: Caller) -> None:
        caller.require_access(table, existing, "Delete")
        row_id = str(existing[table.primary_id])
        with self.store.transaction():
            self.store.delete(table, row_id)
            forget_links(self.store, table, row_id, caller)

    @staticmethod
    def _require_assign(table: Table, owner: StoredValue, caller: Caller) -> None:
        """Only an administrator gives a row to someone else (prvAssign)."""
        if owner is None or (owner != caller.system_user_id and not caller.is_admin):
            raise WebApiError(
                403,
                "0x80040220",
                f"Principal user (Id={caller.system_user_id}) is missing prvAssign"
                f"{table.display_name.replace(' ', '')} privilege on OTC={table.object_type_code} "
                f"for entity '{table.logical_name}'.",
            )

    @staticmethod
    def check_etag(existing: StoredRow, if_match: str | None) -> None:
        if if_match and if_match.strip() != "*" and if_match.strip() != etag(existing):
            raise etag_mismatch()

    @staticmethod
    def _default_status(table: Table, state: int) -> int:
        status = table.columns.get("statuscode")
        if status is None:
            return 1
        return next((option.value for option in status.options if option.state == state), 1)

    @staticmethod
    def _derive(table: Table, row: StoredRow) -> None:
        """Columns the platform computes: a person's full name, base-currency money."""
        if "fullname" in table.columns and "lastname" in table.columns:
            parts = [row.get("firstname"), row.get("lastname")]
            row["fullname"] = " ".join(str(part) for part in parts if part) or None
        for name in table.money_with_base:
            row[f"{name}_base"] = row.get(name)
        for column in table.polymorphic_lookups:
            if row.get(column.logical_name) is not None and not row.get(target_column(column)):
                row[target_column(column)] = column.targets[0]

    @staticmethod
    def _check_required(table: Table, row: StoredRow) -> None:
        for column in table.columns.values():
            if column.required_level == "SystemRequired" and row.get(column.logical_name) is None:
                raise WebApiError(
                    400,
                    "0x80040200",
                    f"A value for the required column '{column.logical_name}' of '{table.logical_name}' is missing.",
                )
