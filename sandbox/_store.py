"""SQLite storage for one environment: a table per Dataverse table, a column per attribute.

Values are stored as `_expression.py` describes. Every write takes the next row version from one counter,
which is what `@odata.etag` and `If-Match` compare; a deleted row leaves a tombstone (table, id, the version of
its deletion) so change tracking can report it, across restarts too. The connection is used from the event
loop's thread only, so writes are serialised exactly as a single Dataverse organization database would order them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from ._catalog import Catalog, Column, Table

StoredValue = str | int | float | None
StoredRow = dict[str, StoredValue]

_DELETED: Final = "_deleted_rows"  # tombstones; no Dataverse logical name starts with an underscore

_SQL_TYPES: Final = {
    "string": "TEXT COLLATE NOCASE",
    "integer": "INTEGER",
    "choice": "INTEGER",
    "decimal": "REAL",
    "boolean": "INTEGER",
    "datetime": "TEXT",
    "guid": "TEXT",
    "choices": "TEXT",
}


def quote(identifier: str) -> str:
    """An SQL identifier; catalog names are plain, but quoting keeps that from mattering."""
    return '"' + identifier.replace('"', '""') + '"'


def target_column(column: Column) -> str:
    """The companion column naming the table a polymorphic lookup points at."""
    return f"{column.logical_name}__target"


def is_polymorphic(column: Column) -> bool:
    return column.is_lookup and len(column.targets) > 1


class Store:
    """The rows of every table of one environment."""

    def __init__(self, path: Path | str, catalog: Catalog) -> None:
        self.catalog = catalog
        self.connection = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.connection.row_factory = sqlite3.Row
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self._savepoints = 0
        self._create_schema()

    def close(self) -> None:
        self.connection.close()

    def _create_schema(self) -> None:
        with self.transaction():
            self.connection.execute("CREATE TABLE IF NOT EXISTS _sandbox (name TEXT PRIMARY KEY, value INTEGER)")
            self.connection.execute("INSERT OR IGNORE INTO _sandbox VALUES ('rowversion', 1000000)")
            self.connection.execute(
                f"CREATE TABLE IF NOT EXISTS {_DELETED} (tablename TEXT NOT NULL, id TEXT NOT NULL, "
                "versionnumber INTEGER NOT NULL)"
            )
            self.connection.execute(
                f"CREATE INDEX IF NOT EXISTS ix_deleted_rows ON {_DELETED} (tablename, versionnumber)"
            )
            for table in self.catalog:
                self.connection.execute(self._create_table_sql(table))
                for statement in self._index_sql(table):
                    self.connection.execute(statement)

    def _create_table_sql(self, table: Table) -> str:
        definitions = []
        for column in table.stored_columns():
            definition = f"{quote(column.logical_name)} {_SQL_TYPES[column.kind]}"
            if column.logical_name == table.primary_id:
                definition += " PRIMARY KEY"
            definitions.append(definition)
            if is_polymorphic(column):
                definitions.append(f"{quote(target_column(column))} TEXT")
        return f"CREATE TABLE IF NOT EXISTS {quote(table.logical_name)} ({', '.join(definitions)})"

    def _index_sql(self, table: Table) -> Iterator[str]:
        for key in table.keys:
            columns = ", ".join(quote(name) for name in key.columns)
            present = " AND ".join(f"{quote(name)} IS NOT NULL" for name in key.columns)
            yield (
                f"CREATE UNIQUE INDEX IF NOT EXISTS {quote('key_' + key.logical_name)} "
                f"ON {quote(table.logical_name)} ({columns}) WHERE {present}"
            )
        for name in ("owninguser", table.primary_name, "createdon"):
            if name in table.columns:
                yield (
                    f"CREATE INDEX IF NOT EXISTS {quote(f'ix_{table.logical_name}_{name}')} "
                    f"ON {quote(table.logical_name)} ({quote(name)})"
                )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing; one opened inside another is a savepoint, undone with it (a `$batch` change set)."""
        if self.connection.in_transaction:
            self._savepoints += 1
            name = f"write_{self._savepoints}"
            self.connection.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                self.connection.execute(f"ROLLBACK TO {name}")
                self.connection.execute(f"RELEASE {name}")
                raise
            self.connection.execute(f"RELEASE {name}")
            return
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def next_version(self) -> int:
        self.connection.execute("UPDATE _sandbox SET value = value + 1 WHERE name = 'rowversion'")
        return self.version()

    def version(self) -> int:
        """The last row version given out: every write so far has it or an older one."""
        row = self.connection.execute("SELECT value FROM _sandbox WHERE name = 'rowversion'").fetchone()
        return int(row[0])

    def is_empty(self) -> bool:
        return all(self.count(table) == 0 for table in self.catalog)

    def count(self, table: Table) -> int:
        row = self.connection.execute(f"SELECT COUNT(*) FROM {quote(table.logical_name)}").fetchone()
        return int(row[0])

    def get(self, table: Table, row_id: str) -> StoredRow | None:
        row = self.connection.execute(
            f"SELECT * FROM {quote(table.logical_name)} WHERE {quote(table.primary_id)} = ?", (row_id,)
        ).fetchone()
        return dict(row) if row else None

    def find_by_key(self, table: Table, values: Mapping[str, StoredValue]) -> StoredRow | None:
        condition = " AND ".join(f"{quote(name)} = ?" for name in values)
        row = self.connection.execute(
            f"SELECT * FROM {quote(table.logical_name)} WHERE {condition}", tuple(values.values())
        ).fetchone()
        return dict(row) if row else None

    def insert(self, table: Table, row: StoredRow) -> None:
        """Insert one row; raises sqlite3.IntegrityError when its id or an alternate key exists."""
        names = ", ".join(quote(name) for name in row)
        placeholders = ", ".join("?" for _ in row)
        self.connection.execute(
            f"INSERT INTO {quote(table.logical_name)} ({names}) VALUES ({placeholders})", tuple(row.values())
        )

    def insert_many(self, table: Table, rows: Sequence[StoredRow]) -> None:
        if not rows:
            return
        names = list(rows[0])
        placeholders = ", ".join("?" for _ in names)
        self.connection.executemany(
            f"INSERT INTO {quote(table.logical_name)} ({', '.join(quote(n) for n in names)}) VALUES ({placeholders})",
            [tuple(row.get(name) for name in names) for row in rows],
        )

    def update(self, table: Table, row_id: str, changes: StoredRow) -> None:
        assignments = ", ".join(f"{quote(name)} = ?" for name in changes)
        self.connection.execute(
            f"UPDATE {quote(table.logical_name)} SET {assignments} WHERE {quote(table.primary_id)} = ?",
            (*changes.values(), row_id),
        )

    def delete(self, table: Table, row_id: str) -> None:
        """Delete one row, leaving its tombstone."""
        with self.transaction():
            deleted = self.connection.execute(
                f"DELETE FROM {quote(table.logical_name)} WHERE {quote(table.primary_id)} = ?", (row_id,)
            )
            if deleted.rowcount:
                self.connection.execute(
                    f"INSERT INTO {_DELETED} VALUES (?, ?, ?)", (table.logical_name, row_id, self.next_version())
                )

    def deletions(self, table: Table, after: int, upto: int, limit: int | None = None) -> list[tuple[str, int]]:
        """The ids of rows deleted with a version in (`after`, `upto`], each with its last deletion's version, oldest
        first; a row that exists again (created anew with its old id by `upto`) is not deleted."""
        sql = (
            f"SELECT d.id, MAX(d.versionnumber) FROM {_DELETED} AS d WHERE d.tablename = ? "
            "AND d.versionnumber > ? AND d.versionnumber <= ? AND NOT EXISTS (SELECT 1 FROM "
            f"{quote(table.logical_name)} AS t WHERE t.{quote(table.primary_id)} = d.id AND t.versionnumber <= ?) "
            "GROUP BY d.id ORDER BY 2"
        )
        parameters: list[object] = [table.logical_name, after, upto, upto]
        if limit is not None:
            sql += " LIMIT ?"
            parameters.append(limit)
        return [(str(row[0]), int(row[1])) for row in self.connection.execute(sql, parameters).fetchall()]

    def select(self, sql: str, parameters: Iterable[object]) -> list[StoredRow]:
        return [dict(row) for row in self.connection.execute(sql, tuple(parameters)).fetchall()]

    def scalar(self, sql: str, parameters: Iterable[object]) -> int:
        row = self.connection.execute(sql, tuple(parameters)).fetchone()
        return int(row[0])
