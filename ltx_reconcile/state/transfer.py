"""The whole state as one versioned JSON document: `state pull` writes it, `state push` reads it.

The document is backend-neutral and generic over the schema: it holds every table of the
state except `meta` (whose lineage and serial are fields of their own), `lease`
(coordination, not state) and PostgreSQL's `schema_version` (the document's own field),
each as a list of rows, a row being an object of column name to value, in the order the
rows were inserted. Tables, columns, keys and triggers are read from the database's own
catalogue (SQLite's `sqlite_master` and pragmas, PostgreSQL's `pg_catalog`), so a later
schema version needs no change here, and a document pulled from one backend pushes to the
other: that is how a team moves a state from a file to PostgreSQL and back. JSON-valued
columns (`inputs`, `request`) stay the text they are in the database.

    {"format_version": 1, "tool_version": "0.1.0", "schema_version": 2,
     "lineage": "6b1f...", "serial": 12,
     "tables": {"artifacts": [{"digest": "...", ...}], "images": [...], "journal": [...]}}

Pushing a document replaces every table's rows with the document's, in one transaction,
and refuses (unless forced):
- a document of another lineage (unless the state was never written: serial 0);
- a document pulled at a serial older than the state's: someone wrote the state since;
- a document that lacks rows the schema forbids deleting: a table with a `BEFORE DELETE`
  trigger that raises (the journal: "journal rows are never deleted"), because a journal
  row is the only record that a job was paid for.
It always refuses a document of an unknown `format_version` or of a newer schema. A
document of an older schema is migrated first: loaded into an in-memory SQLite database at
its own schema version and taken forward by the same migrations the state file goes
through (both backends' schema versions agree, postgres.py). The state's serial afterwards
is one more than the greater of the two serials.

Insertion order: SQLite keeps it in each table's rowid; PostgreSQL only where it matters,
in the artifacts' hidden `rowid` identity column (the newest artifact of a key wins a tie
on time by it); its other tables are read in primary key order.

Besides journal.py, this is the one module that writes the journal table, and only whole
rows: it puts back the rows the document holds, and drops one only when forced.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, Protocol, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ltx_reconcile import __version__
from ltx_reconcile.errors import StateError, UsageError
from ltx_reconcile.state.schema import MIGRATIONS, SCHEMA_VERSION, verify_schema
from ltx_reconcile.state.snapshot import _connect_for_reading
from ltx_reconcile.state.store import BaseStateStore, Cursor, StateStore

if TYPE_CHECKING:
    from ltx_reconcile.state.postgres import PostgresStateStore

__all__ = [
    "FORMAT_VERSION",
    "UNTRANSFERRED_TABLES",
    "PushResult",
    "StateDocument",
    "parse_document",
    "pull_document",
    "push_document",
    "read_document",
    "read_postgres_document",
]

FORMAT_VERSION: Final = 1
"""Changes whenever the document's shape does (not when the schema gains a table)."""

UNTRANSFERRED_TABLES: Final = frozenset({"meta", "lease", "schema_version"})
"""`meta` and PostgreSQL's `schema_version` are the document's own fields; the lease
belongs to whoever pushes."""

Value = str | int | float | None
Row = dict[str, Value]
Execute = Callable[..., Cursor]
"""`sqlite3.Connection.execute`, or a store's `_execute`: where the catalogues read."""

_SQLITE_RAISE: Final = re.compile(
    r"RAISE\s*\(\s*(?:ABORT|FAIL|ROLLBACK)\s*,\s*'((?:[^']|'')*)'", re.IGNORECASE
)
_POSTGRES_RAISE: Final = re.compile(r"RAISE\s+EXCEPTION\s+'((?:[^']|'')*)'", re.IGNORECASE)
_BEFORE_DELETE: Final = re.compile(r"\bBEFORE\s+DELETE\s+ON\b", re.IGNORECASE)
_SHOWN_KEYS: Final = 10


class StateDocument(BaseModel):
    """The whole state (but the lease) at one serial, as `state pull` prints it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1]
    tool_version: str
    """The ltx-reconcile that wrote the document; informative only."""
    schema_version: int = Field(ge=1)
    """The state schema the tables' columns belong to (the same number on both backends)."""
    lineage: str
    serial: int = Field(ge=0)
    tables: dict[str, list[Row]]
    """Table name -> its rows, each a column -> value object, in insertion order."""


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push changed."""

    lineage: str
    previous_lineage: str
    serial: int
    previous_serial: int
    rows: Mapping[str, int]
    """Table -> how many rows it holds now."""
    dropped: Mapping[str, int]
    """Table -> rows whose deletion the schema forbids, dropped anyway by `force`."""


def read_document(path: Path) -> StateDocument | None:
    """The state file at `path` as a document, read in one read transaction; None when
    there is no state (no file, or an empty one). Never writes, never creates the file.

    Raises `SchemaTooNewError` for a state of a newer ltx-reconcile, `StateError` for a
    file that is not a state or cannot be read. An older schema is read as it is.
    """
    if not path.exists():
        return None
    try:
        conn = _connect_for_reading(path)
    except sqlite3.Error as err:
        raise StateError(f"cannot read state {path}: {err}") from err
    try:
        conn.execute("BEGIN")
        version = verify_schema(conn, path, SCHEMA_VERSION)
        if version == 0:
            return None
        return _document(_SqliteCatalogue(conn.execute), conn.execute, version)
    except sqlite3.Error as err:
        raise StateError(f"cannot read state {path}: {err}") from err
    finally:
        conn.close()  # ends the read transaction; nothing was written


def read_postgres_document(conninfo: str, *, schema: str) -> StateDocument | None:
    """The PostgreSQL state in `schema` as a document, read only, at one serial; None when
    the schema holds no state yet. Creates, migrates and writes nothing.

    Needs psycopg (the `postgres` extra). Raises like `PostgresStateStore.reading`.
    """
    from ltx_reconcile.state.postgres import PostgresStateStore

    with PostgresStateStore.reading(conninfo, schema=schema) as store:
        return None if store is None else pull_document(store)


def pull_document(store: BaseStateStore) -> StateDocument:
    """The state open in `store` (either backend) as a document, read at one serial.

    Inside an open `transaction()` it reads the state as that transaction sees it. Raises
    `StateError` when the database cannot be read.
    """
    catalogue = _catalogue(store)
    with catalogue.reading():
        return _document(catalogue, store._execute, catalogue.schema_version())


def _document(catalogue: _Catalogue, execute: Execute, version: int) -> StateDocument:
    lineage, serial = execute("SELECT lineage, serial FROM meta").fetchone()
    tables = {table: _rows(catalogue, execute, table) for table in catalogue.tables()}
    # Trusted rows from our own database: building the model without validating them keeps
    # a pull of 100,000 images to the time it takes to read them.
    return StateDocument.model_construct(
        format_version=FORMAT_VERSION,
        tool_version=__version__,
        schema_version=version,
        lineage=lineage,
        serial=serial,
        tables=tables,
    )


def parse_document(text: str, source: str) -> StateDocument:
    """The document in `text` (read from `source`, named in messages).

    Raises `UsageError` for text that is not a state document, or one of a format version
    or a schema this ltx-reconcile does not know.
    """
    hint = "make one with `ltx-reconcile state pull > FILE`"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(
            f"{source} is not JSON ({err.msg} at line {err.lineno}, column {err.colno})",
            hint=hint,
        ) from None
    if not isinstance(data, dict) or "format_version" not in data:
        raise UsageError(f"{source} is not a state document (no format_version)", hint=hint)
    if data["format_version"] != FORMAT_VERSION:
        raise UsageError(
            f"{source} is a state document of format version {data['format_version']!r}; "
            f"this ltx-reconcile reads format version {FORMAT_VERSION}",
            hint="push it with the ltx-reconcile that pulled it, or pull the state again",
        )
    try:
        document = StateDocument.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UsageError(
            f"{source} is not a valid state document ({where}: {first['msg']})", hint=hint
        ) from None
    if document.schema_version > SCHEMA_VERSION:
        raise UsageError(
            f"{source} holds a state of schema {document.schema_version}, written by a newer "
            f"ltx-reconcile; this one understands up to schema {SCHEMA_VERSION}",
            hint="upgrade ltx-reconcile to push it; nothing was changed",
        )
    return document


def push_document(
    store: BaseStateStore, document: StateDocument, *, source: str, force: bool = False
) -> PushResult:
    """Replace the state in `store` (either backend) by `document`, in one transaction; see
    the module doc.

    The caller holds the lease. Raises `StateError` for a document of another lineage or an
    older serial, or one that drops rows the schema keeps forever, unless `force`;
    `UsageError` for a document whose tables, columns or rows the schema refuses. On any
    error nothing is changed.
    """
    if document.schema_version < SCHEMA_VERSION:
        document = _migrated(document, source)
    catalogue = _catalogue(store)
    with store.transaction():
        previous_lineage, previous_serial = store.lineage, store.serial
        if not force:
            _check_succession(document, source, previous_lineage, previous_serial)
        tables = catalogue.tables()
        _check_shape(catalogue, document, tables, source)
        drops = _guarded_drops(catalogue, store._execute, document, tables)
        if drops and not force:
            raise _drop_refusal(source, drops)
        with catalogue.replacing(tables):
            for table in tables:
                store._write(f"DELETE FROM {_quoted(table)}")  # noqa: S608 (names from the schema)
                _insert(catalogue, store, table, document.tables[table], source)
            _check_references(catalogue, source)
        serial = max(previous_serial, document.serial)
        store._write("UPDATE meta SET lineage = ?, serial = ?", (document.lineage, serial))
    return PushResult(
        lineage=document.lineage,
        previous_lineage=previous_lineage,
        serial=store.serial,
        previous_serial=previous_serial,
        rows={table: len(document.tables[table]) for table in tables},
        dropped={table: len(drop.lost) for table, drop in drops.items()},
    )


def _check_succession(document: StateDocument, source: str, lineage: str, serial: int) -> None:
    # A state never written (serial 0) has a lineage nobody has seen yet: adopting the
    # document's is how a state is restored into an empty directory, or moved to a new
    # PostgreSQL schema.
    if serial == 0:
        return
    if document.lineage != lineage:
        raise StateError(
            f"{source} belongs to another state: its lineage is {document.lineage}, "
            f"the state's is {lineage}",
            hint="pull from the state you mean to change, or pass --force to replace this "
            "state by the document, lineage included",
        )
    if document.serial < serial:
        raise StateError(
            f"{source} was pulled at serial {document.serial}, but the state has moved on "
            f"to serial {serial}",
            hint="pull again and redo your edit on the new document; --force would undo "
            "the writes made since",
        )


def _check_shape(
    catalogue: _Catalogue, document: StateDocument, tables: Sequence[str], source: str
) -> None:
    """Refuse a document whose tables, or whose rows' columns, are not the schema's."""
    missing = sorted(set(tables) - set(document.tables))
    extra = sorted(set(document.tables) - set(tables))
    if missing or extra:
        problems = [f"no table {name}" for name in missing]
        problems += [f"a table {name}, which the schema does not have" for name in extra]
        raise UsageError(
            f"{source} does not match state schema {document.schema_version}: it has "
            + "; ".join(problems),
            hint="push a document made by `ltx-reconcile state pull`, edited only in its rows",
        )
    for table in tables:
        columns = set(catalogue.columns(table))
        for index, row in enumerate(document.tables[table]):
            if set(row) != columns:
                raise UsageError(
                    f"{source}: row {index} of table {table} "
                    + _column_difference(set(row), columns),
                    hint="every row must have exactly its table's columns (null for none)",
                )


def _column_difference(have: set[str], want: set[str]) -> str:
    parts = []
    if want - have:
        parts.append("lacks " + ", ".join(sorted(want - have)))
    if have - want:
        parts.append("has unknown " + ", ".join(sorted(have - want)))
    return " and ".join(parts)


@dataclass(frozen=True, slots=True)
class _Drop:
    """Rows of one table a push would delete although the schema keeps them for good."""

    key: tuple[str, ...]
    """The table's primary key columns."""
    lost: list[tuple[Value, ...]]
    """The key of each row the document lacks."""
    reason: str
    """What the schema's trigger says when asked to delete one."""


def _guarded_drops(
    catalogue: _Catalogue, execute: Execute, document: StateDocument, tables: Sequence[str]
) -> dict[str, _Drop]:
    """The rows the document lacks, of every table whose rows a trigger forbids deleting."""
    drops: dict[str, _Drop] = {}
    for table, reason in catalogue.delete_guards().items():
        if table not in tables:
            continue
        key = catalogue.primary_key(table)
        kept = {tuple(row[c] for c in key) for row in document.tables[table]}
        listed = ", ".join(_quoted(c) for c in key)
        current = execute(f"SELECT {listed} FROM {_quoted(table)} ORDER BY {listed}")  # noqa: S608 (names from the schema)
        lost = [tuple(row) for row in current.fetchall() if tuple(row) not in kept]
        if lost:
            drops[table] = _Drop(tuple(key), lost, reason)
    return drops


def _drop_refusal(source: str, drops: Mapping[str, _Drop]) -> StateError:
    parts = []
    for table, drop in sorted(drops.items()):
        shown = ", ".join("/".join(str(v) for v in key) for key in drop.lost[:_SHOWN_KEYS])
        more = ", ..." if len(drop.lost) > _SHOWN_KEYS else ""
        rows = "1 row" if len(drop.lost) == 1 else f"{len(drop.lost)} rows"
        parts.append(f'{rows} of {table} ({"/".join(drop.key)} {shown}{more}): "{drop.reason}"')
    why = ""
    if "journal" in drops:
        why = (
            " A journal row is the only record that a job was paid for; without it, apply "
            "could pay for that image again."
        )
    return StateError(
        f"{source} lacks rows the state keeps for good, {'; '.join(parts)}.{why}",
        hint="keep those rows in the document (pull again and redo your edit), or pass "
        "--force to drop them anyway",
    )


def _insert(
    catalogue: _Catalogue, store: BaseStateStore, table: str, rows: Sequence[Row], source: str
) -> None:
    if not rows:
        return
    columns = list(rows[0])
    names = ", ".join(_quoted(c) for c in columns)
    marks = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO {_quoted(table)} ({names}) VALUES ({marks})"  # noqa: S608 (names from the schema)
    for index, row in enumerate(rows):
        try:
            store._write(sql, tuple(row[c] for c in columns))
        except StateError as err:
            reason = catalogue.refusal(err.__cause__)
            if reason is None:
                raise
            raise UsageError(
                f"{source}: row {index} of table {table} is refused by the state's schema "
                f"({reason})",
                hint="fix that row; nothing was changed",
            ) from None


def _check_references(catalogue: _Catalogue, source: str) -> None:
    broken = catalogue.broken_references()
    if broken:
        table, parent = broken[0]
        raise UsageError(
            f"{source}: {len(broken)} row(s) refer to rows it does not have "
            f"(the first: a row of {table} names a missing row of {parent})",
            hint="every digest an image or journal row names must be one of its artifacts",
        )


def _migrated(document: StateDocument, source: str) -> StateDocument:
    """`document` taken forward to `SCHEMA_VERSION` by the state file's own migrations."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    catalogue = _SqliteCatalogue(conn.execute)
    try:
        for migration in MIGRATIONS[: document.schema_version]:
            migration(conn)
        tables = catalogue.tables()
        _check_shape(catalogue, document, tables, source)
        for table in tables:
            rows = document.tables[table]
            if rows:
                columns = list(rows[0])
                names = ", ".join(_quoted(c) for c in columns)
                marks = ", ".join("?" for _ in columns)
                conn.executemany(
                    f"INSERT INTO {_quoted(table)} ({names}) VALUES ({marks})",  # noqa: S608 (names from the schema)
                    [tuple(row[c] for c in columns) for row in rows],
                )
        for migration in MIGRATIONS[document.schema_version :]:
            migration(conn)
        migrated = {table: _rows(catalogue, conn.execute, table) for table in catalogue.tables()}
    except sqlite3.Error as err:
        raise UsageError(
            f"cannot take {source} from state schema {document.schema_version} to "
            f"{SCHEMA_VERSION}: {err}",
            hint="push it with the ltx-reconcile that pulled it, or pull the state again",
        ) from None
    finally:
        conn.close()
    return document.model_copy(update={"schema_version": SCHEMA_VERSION, "tables": migrated})


def _rows(catalogue: _Catalogue, execute: Execute, table: str) -> list[Row]:
    columns = catalogue.columns(table)
    listed = ", ".join(_quoted(c) for c in columns)
    # Insertion order where the database keeps it, which a push reproduces: the snapshot
    # breaks a tie between two artifacts of one key made at the same time by it.
    order = ", ".join(catalogue.insertion_order(table))
    sql = f"SELECT {listed} FROM {_quoted(table)} ORDER BY {order}"  # noqa: S608 (names from the schema)
    return [dict(zip(columns, row, strict=True)) for row in execute(sql).fetchall()]


# -- what each backend's own catalogue says about its schema --------------------------------


class _Catalogue(Protocol):
    """One database's schema, read from its catalogue, and what a push does around it."""

    def tables(self) -> list[str]:
        """The transferred tables, sorted by name."""
        ...

    def columns(self, table: str) -> list[str]:
        """The table's columns a document carries, in the table's order."""
        ...

    def primary_key(self, table: str) -> list[str]:
        """The table's primary key columns; all of its columns when it has none."""
        ...

    def insertion_order(self, table: str) -> list[str]:
        """Quoted SQL expressions that list the table's rows in the order they were written."""
        ...

    def delete_guards(self) -> dict[str, str]:
        """Table -> the message of its trigger that refuses to delete rows."""
        ...

    def schema_version(self) -> int:
        """The version the schema is at."""
        ...

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """One read transaction (unless one is open already): the tables agree."""
        ...

    def replacing(self, tables: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        """Inside a push's transaction: a block in which `tables` are emptied and refilled.

        References are checked at the end of the block, not per row; triggers are off
        (the push checked their rules itself) and are back as they were afterwards.
        """
        ...

    def broken_references(self) -> list[tuple[str, str]]:
        """(table, parent table) for each row naming a row its parent table lacks."""
        ...

    def refusal(self, cause: BaseException | None) -> str | None:
        """What the schema objects to, when `cause` is a row it refused; else None."""
        ...


def _catalogue(store: BaseStateStore) -> _Catalogue:
    if isinstance(store, StateStore):
        return _SqliteCatalogue(store._execute)
    # The one other backend; not imported to check: that needs psycopg, which a state file
    # does not.
    return _PostgresCatalogue(cast("PostgresStateStore", store))


class _SqliteCatalogue:
    """SQLite's `sqlite_master` and pragmas, read through `execute`."""

    def __init__(self, execute: Execute) -> None:
        self._execute = execute

    def tables(self) -> list[str]:
        names = self._execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
            "ESCAPE '\\' ORDER BY name"
        ).fetchall()
        return [name for (name,) in names if name not in UNTRANSFERRED_TABLES]

    def columns(self, table: str) -> list[str]:
        return [row[1] for row in self._table_info(table)]

    def primary_key(self, table: str) -> list[str]:
        info = self._table_info(table)
        key = [row[1] for row in sorted(info, key=lambda row: row[5]) if row[5] > 0]
        return key or [row[1] for row in info]

    def insertion_order(self, table: str) -> list[str]:
        (sql,) = self._execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        if re.search(r"\bWITHOUT\s+ROWID\b", sql, re.IGNORECASE) is None:
            return ["rowid"]
        return [_quoted(c) for c in self.primary_key(table)]

    def delete_guards(self) -> dict[str, str]:
        guards: dict[str, str] = {}
        for table, sql in self._execute(
            "SELECT tbl_name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
        ).fetchall():
            if _BEFORE_DELETE.search(sql):
                guards[table] = _raised_message(_SQLITE_RAISE, sql)
        return guards

    def schema_version(self) -> int:
        version: int = self._execute("PRAGMA user_version").fetchone()[0]
        return version

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        # A savepoint is a deferred BEGIN when no transaction is open, a nested one if one is.
        self._execute("SAVEPOINT pull")
        try:
            yield
        finally:
            self._execute("RELEASE pull")

    @contextlib.contextmanager
    def replacing(self, tables: Sequence[str]) -> Iterator[None]:
        # Foreign keys are checked once, at the end: the rows may come in any table order.
        self._execute("PRAGMA defer_foreign_keys = ON")
        # Dropped and created again rather than disabled (SQLite cannot disable one). The
        # block runs inside the push's transaction: no other connection ever sees the
        # schema without its triggers, and a failure rolls the drop back with the rest.
        triggers = [
            (name, sql)
            for name, table, sql in self._execute(
                "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
            ).fetchall()
            if table in tables
        ]
        for name, _sql in triggers:
            self._execute(f"DROP TRIGGER {_quoted(name)}")
        yield
        for _name, sql in triggers:
            self._execute(sql)

    def broken_references(self) -> list[tuple[str, str]]:
        return [
            (table, parent)
            for table, _rowid, parent, _index in self._execute(
                "PRAGMA foreign_key_check"
            ).fetchall()
        ]

    def refusal(self, cause: BaseException | None) -> str | None:
        return str(cause) if isinstance(cause, sqlite3.IntegrityError) else None

    def _table_info(self, table: str) -> list[_ColumnInfo]:
        info: list[_ColumnInfo] = self._execute(f"PRAGMA table_info({_quoted(table)})").fetchall()
        return info


_ColumnInfo = tuple[int, str, str, int, object, int]
"""A row of SQLite's `PRAGMA table_info`: cid, name, type, notnull, default, pk position."""


class _PostgresCatalogue:
    """PostgreSQL's `pg_catalog`, for the one schema that holds the state of `store`."""

    def __init__(self, store: PostgresStateStore) -> None:
        self._store = store
        self._execute = store._execute
        self._schema = store.schema

    def tables(self) -> list[str]:
        names = self._execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ? AND c.relkind IN ('r', 'p')",
            (self._schema,),
        ).fetchall()
        return sorted(name for (name,) in names if name not in UNTRANSFERRED_TABLES)

    def columns(self, table: str) -> list[str]:
        # Not an identity column GENERATED ALWAYS: that is the hidden `rowid` which keeps
        # the artifacts' insertion order (postgres.py); SQLite's is implicit, so no
        # document carries it, and the database numbers the rows a push inserts.
        return [name for name, identity in self._attributes(table) if identity != "a"]

    def primary_key(self, table: str) -> list[str]:
        key = [
            name
            for (name,) in self._execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                "ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) "
                "WHERE i.indrelid = CAST(? AS regclass) AND i.indisprimary "
                "ORDER BY array_position(CAST(i.indkey AS int2[]), a.attnum)",
                (self._qualified(table),),
            ).fetchall()
        ]
        return key or self.columns(table)

    def insertion_order(self, table: str) -> list[str]:
        hidden = [name for name, identity in self._attributes(table) if identity == "a"]
        return [_quoted(c) for c in hidden or self.primary_key(table)]

    def delete_guards(self) -> dict[str, str]:
        guards: dict[str, str] = {}
        # tgtype's bits: 2 BEFORE, 8 DELETE, 64 INSTEAD OF (pg_trigger.h).
        for table, source in self._execute(
            "SELECT c.relname, p.prosrc FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_proc p ON p.oid = t.tgfoid "
            "WHERE n.nspname = ? AND NOT t.tgisinternal "
            "AND (CAST(t.tgtype AS integer) & 74) = 10 ORDER BY t.tgname",
            (self._schema,),
        ).fetchall():
            guards[table] = _raised_message(_POSTGRES_RAISE, source)
        return guards

    def schema_version(self) -> int:
        return int(self._execute("SELECT version FROM schema_version").fetchone()[0])

    def reading(self) -> contextlib.AbstractContextManager[None]:
        return self._store.read_transaction()

    @contextlib.contextmanager
    def replacing(self, tables: Sequence[str]) -> Iterator[None]:
        # Disabled before any row changes: ALTER TABLE refuses a table with pending
        # deferred checks. Transactional, like the rest of the push.
        triggered = self._triggered_tables(tables)
        for table in triggered:
            self._execute(f"ALTER TABLE {_quoted(table)} DISABLE TRIGGER USER")
        yield
        # The deferred references were checked by the push; fire their own checks now, or
        # ALTER TABLE would find them pending.
        self._execute("SET CONSTRAINTS ALL IMMEDIATE")
        for table in tables:
            self._restart_identities(table)
        for table in triggered:
            self._execute(f"ALTER TABLE {_quoted(table)} ENABLE TRIGGER USER")

    def broken_references(self) -> list[tuple[str, str]]:
        broken: list[tuple[str, str]] = []
        for table, parent, columns, parent_columns in self._execute(
            "SELECT child.relname, parent.relname, "
            "ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k (num, pos) "
            "      JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num "
            "      ORDER BY k.pos), "
            "ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k (num, pos) "
            "      JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num "
            "      ORDER BY k.pos) "
            "FROM pg_constraint con "
            "JOIN pg_class child ON child.oid = con.conrelid "
            "JOIN pg_class parent ON parent.oid = con.confrelid "
            "JOIN pg_namespace n ON n.oid = child.relnamespace "
            "WHERE con.contype = 'f' AND n.nspname = ? ORDER BY child.relname, con.conname",
            (self._schema,),
        ).fetchall():
            count = self._count_orphans(table, parent, columns, parent_columns)
            broken += [(table, parent)] * count
        return broken

    def refusal(self, cause: BaseException | None) -> str | None:
        import psycopg

        # Integrity (class 23: checks, keys, nulls) and data (class 22: a value the column's
        # type cannot hold, which SQLite's loose typing would have stored).
        if isinstance(cause, psycopg.errors.IntegrityError | psycopg.errors.DataError):
            return (cause.diag.message_primary or str(cause)).strip()
        return None

    def _attributes(self, table: str) -> list[tuple[str, str]]:
        """(name, attidentity) of each column in order; attidentity 'a' is GENERATED ALWAYS."""
        rows: list[tuple[str, str]] = self._execute(
            "SELECT attname, attidentity FROM pg_attribute "
            "WHERE attrelid = CAST(? AS regclass) AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum",
            (self._qualified(table),),
        ).fetchall()
        return rows

    def _triggered_tables(self, tables: Sequence[str]) -> list[str]:
        rows = self._execute(
            "SELECT DISTINCT c.relname FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ? AND NOT t.tgisinternal",
            (self._schema,),
        ).fetchall()
        return sorted(name for (name,) in rows if name in tables)

    def _restart_identities(self, table: str) -> None:
        """Set each GENERATED BY DEFAULT identity past the ids a push inserted, as SQLite's
        INTEGER PRIMARY KEY follows its largest id: else the next journal row's id clashes."""
        for name, identity in self._attributes(table):
            if identity == "d":
                sql = (
                    "SELECT setval(pg_get_serial_sequence(?, ?), "  # noqa: S608 (names from the schema)
                    f"COALESCE(MAX({_quoted(name)}), 0) + 1, false) FROM {_quoted(table)}"
                )
                self._execute(sql, (self._qualified(table), name))

    def _count_orphans(
        self, table: str, parent: str, columns: Sequence[str], parent_columns: Sequence[str]
    ) -> int:
        present = " AND ".join(f"c.{_quoted(col)} IS NOT NULL" for col in columns)
        match = " AND ".join(
            f"p.{_quoted(pcol)} = c.{_quoted(col)}"
            for col, pcol in zip(columns, parent_columns, strict=True)
        )
        (count,) = self._execute(
            f"SELECT COUNT(*) FROM {_quoted(table)} c WHERE {present} AND NOT EXISTS "  # noqa: S608 (names from the schema)
            f"(SELECT 1 FROM {_quoted(parent)} p WHERE {match})"
        ).fetchone()
        return int(count)

    def _qualified(self, table: str) -> str:
        return f"{_quoted(self._schema)}.{_quoted(table)}"


def _raised_message(pattern: re.Pattern[str], source: str) -> str:
    """The message a trigger's code raises, quotes undoubled; a stock phrase if none."""
    found = pattern.search(source)
    return found.group(1).replace("''", "'") if found else "its rows are kept"


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
