"""The whole state as one versioned JSON document: `state pull` writes it, `state push` reads it.

The document is generic over the schema: it holds every table of the state file except
`meta` (whose lineage and serial are fields of their own) and `lease` (coordination, not
state), each as a list of rows, a row being an object of column name to value, in the
order the rows were inserted. Tables and columns are read from SQLite itself, so a later
schema version needs no change here. JSON-valued columns (`inputs`, `request`) stay the
text they are in the file.

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
document of an older schema is migrated first: loaded into an in-memory database at its
own schema version and taken forward by the same migrations the state file goes through.
The state's serial afterwards is one more than the greater of the two serials.

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
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ltx_reconcile import __version__
from ltx_reconcile.errors import StateError, UsageError
from ltx_reconcile.state.schema import MIGRATIONS, SCHEMA_VERSION, verify_schema
from ltx_reconcile.state.snapshot import _connect_for_reading
from ltx_reconcile.state.store import StateStore

__all__ = [
    "FORMAT_VERSION",
    "UNTRANSFERRED_TABLES",
    "PushResult",
    "StateDocument",
    "parse_document",
    "push_document",
    "read_document",
]

FORMAT_VERSION: Final = 1
"""Changes whenever the document's shape does (not when the schema gains a table)."""

UNTRANSFERRED_TABLES: Final = frozenset({"meta", "lease"})
"""`meta` is the document's own lineage and serial; the lease belongs to whoever pushes."""

Value = str | int | float | None
Row = dict[str, Value]
Execute = Callable[..., sqlite3.Cursor]
"""`sqlite3.Connection.execute`, or a store's `_execute`: where the generic readers read."""

_RAISE_MESSAGE: Final = re.compile(
    r"RAISE\s*\(\s*(?:ABORT|FAIL|ROLLBACK)\s*,\s*'((?:[^']|'')*)'", re.IGNORECASE
)
_BEFORE_DELETE: Final = re.compile(r"\bBEFORE\s+DELETE\s+ON\b", re.IGNORECASE)
_SHOWN_KEYS: Final = 10


class StateDocument(BaseModel):
    """The whole state (but the lease) at one serial, as `state pull` prints it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1]
    tool_version: str
    """The ltx-reconcile that wrote the document; informative only."""
    schema_version: int = Field(ge=1)
    """The state schema (`PRAGMA user_version`) the tables' columns belong to."""
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
    """The state at `path` as a document, read in one read transaction; None when there is
    no state (no file, or an empty one). Never writes, never creates the file.

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
        lineage, serial = conn.execute("SELECT lineage, serial FROM meta").fetchone()
        tables = {table: _rows(conn.execute, table) for table in _tables(conn.execute)}
    except sqlite3.Error as err:
        raise StateError(f"cannot read state {path}: {err}") from err
    finally:
        conn.close()  # ends the read transaction; nothing was written
    # Trusted rows from our own file: building the model without validating them keeps a
    # pull of 100,000 images to the time it takes to read them.
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
    store: StateStore, document: StateDocument, *, source: str, force: bool = False
) -> PushResult:
    """Replace the state in `store` by `document`, in one transaction; see the module doc.

    The caller holds the lease. Raises `StateError` for a document of another lineage or an
    older serial, or one that drops rows the schema keeps forever, unless `force`;
    `UsageError` for a document whose tables, columns or rows the schema refuses. On any
    error nothing is changed.
    """
    if document.schema_version < SCHEMA_VERSION:
        document = _migrated(document, source)
    execute = store._execute
    with store.transaction():
        previous_lineage, previous_serial = store.lineage, store.serial
        if not force:
            _check_succession(document, source, previous_lineage, previous_serial)
        tables = _tables(execute)
        _check_shape(execute, document, tables, source)
        drops = _guarded_drops(execute, document, tables)
        if drops and not force:
            raise _drop_refusal(source, drops)
        # Foreign keys are checked once, at the end: the rows may come in any table order.
        execute("PRAGMA defer_foreign_keys = ON")
        with _triggers_suspended(execute, tables):
            for table in tables:
                store._write(f"DELETE FROM {_quoted(table)}")  # noqa: S608 (names from the schema)
                _insert(store, table, document.tables[table], source)
        _check_references(execute, source)
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
    # document's is how a state is restored into an empty directory.
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
    execute: Execute, document: StateDocument, tables: Sequence[str], source: str
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
        columns = set(_columns(execute, table))
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
    execute: Execute, document: StateDocument, tables: Sequence[str]
) -> dict[str, _Drop]:
    """The rows the document lacks, of every table whose rows a trigger forbids deleting."""
    drops: dict[str, _Drop] = {}
    for table, reason in _delete_guards(execute).items():
        if table not in tables:
            continue
        key = _primary_key(execute, table)
        kept = {tuple(row[c] for c in key) for row in document.tables[table]}
        listed = ", ".join(_quoted(c) for c in key)
        current = execute(f"SELECT {listed} FROM {_quoted(table)} ORDER BY {listed}")  # noqa: S608 (names from the schema)
        lost = [tuple(row) for row in current.fetchall() if tuple(row) not in kept]
        if lost:
            drops[table] = _Drop(tuple(key), lost, reason)
    return drops


def _delete_guards(execute: Execute) -> dict[str, str]:
    """Table -> the message of its trigger that refuses to delete rows."""
    guards: dict[str, str] = {}
    for table, sql in execute(
        "SELECT tbl_name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
    ).fetchall():
        if _BEFORE_DELETE.search(sql):
            found = _RAISE_MESSAGE.search(sql)
            guards[table] = found.group(1).replace("''", "'") if found else "its rows are kept"
    return guards


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


@contextlib.contextmanager
def _triggers_suspended(execute: Execute, tables: Sequence[str]) -> Iterator[None]:
    """Drop the triggers of `tables` for the block, then create them again as they were.

    A push replaces rows wholesale, so the journal's rows are deleted and inserted again
    (after the rules above were checked), which its never-delete trigger would refuse.
    The block runs inside the push's transaction: no other connection ever sees the
    schema without its triggers, and a failure rolls the drop back with the rest.
    """
    triggers = [
        (name, sql)
        for name, table, sql in execute(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
        ).fetchall()
        if table in tables
    ]
    for name, _sql in triggers:
        execute(f"DROP TRIGGER {_quoted(name)}")
    yield
    for _name, sql in triggers:
        execute(sql)


def _insert(store: StateStore, table: str, rows: Sequence[Row], source: str) -> None:
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
            if not isinstance(err.__cause__, sqlite3.IntegrityError):
                raise
            raise UsageError(
                f"{source}: row {index} of table {table} is refused by the state's schema "
                f"({err.__cause__})",
                hint="fix that row; nothing was changed",
            ) from None


def _check_references(execute: Execute, source: str) -> None:
    broken = execute("PRAGMA foreign_key_check").fetchall()
    if broken:
        table, _rowid, parent, _index = broken[0]
        raise UsageError(
            f"{source}: {len(broken)} row(s) refer to rows it does not have "
            f"(the first: a row of {table} names a missing row of {parent})",
            hint="every digest an image or journal row names must be one of its artifacts",
        )


def _migrated(document: StateDocument, source: str) -> StateDocument:
    """`document` taken forward to `SCHEMA_VERSION` by the state file's own migrations."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for migration in MIGRATIONS[: document.schema_version]:
            migration(conn)
        tables = _tables(conn.execute)
        _check_shape(conn.execute, document, tables, source)
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
        migrated = {table: _rows(conn.execute, table) for table in _tables(conn.execute)}
    except sqlite3.Error as err:
        raise UsageError(
            f"cannot take {source} from state schema {document.schema_version} to "
            f"{SCHEMA_VERSION}: {err}",
            hint="push it with the ltx-reconcile that pulled it, or pull the state again",
        ) from None
    finally:
        conn.close()
    return document.model_copy(update={"schema_version": SCHEMA_VERSION, "tables": migrated})


# -- tables, read generically from SQLite's own catalogue -----------------------------------


def _tables(execute: Execute) -> list[str]:
    names = execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
        "ESCAPE '\\' ORDER BY name"
    ).fetchall()
    return [name for (name,) in names if name not in UNTRANSFERRED_TABLES]


def _rows(execute: Execute, table: str) -> list[Row]:
    columns = _columns(execute, table)
    listed = ", ".join(_quoted(c) for c in columns)
    # Insertion order, which a push reproduces: the snapshot breaks a tie between two
    # artifacts of one key made at the same time by it.
    if _has_rowid(execute, table):
        order = "rowid"
    else:
        order = ", ".join(_quoted(c) for c in _primary_key(execute, table))
    sql = f"SELECT {listed} FROM {_quoted(table)} ORDER BY {order}"  # noqa: S608 (names from the schema)
    return [dict(zip(columns, row, strict=True)) for row in execute(sql).fetchall()]


def _columns(execute: Execute, table: str) -> list[str]:
    return [row[1] for row in execute(f"PRAGMA table_info({_quoted(table)})").fetchall()]


def _primary_key(execute: Execute, table: str) -> list[str]:
    """The table's primary key columns; all of its columns when it has none."""
    info = execute(f"PRAGMA table_info({_quoted(table)})").fetchall()
    key = [row[1] for row in sorted(info, key=lambda row: row[5]) if row[5] > 0]
    return key or [row[1] for row in info]


def _has_rowid(execute: Execute, table: str) -> bool:
    (sql,) = execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return re.search(r"\bWITHOUT\s+ROWID\b", sql, re.IGNORECASE) is None


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
