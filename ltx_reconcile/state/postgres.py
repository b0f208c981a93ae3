"""PostgresStateStore: the state in a schema of its own on a PostgreSQL server.

Same contract as the SQLite state (see the package docstring): a lineage fixed at creation,
a serial bumped once per committed transaction that changed something, nested transactions
as savepoints, and a journal whose rows are never deleted (a trigger refuses DELETE and
TRUNCATE). The record methods and the journal's state machine are not repeated here: they
live in `BaseStateStore` and journal.py, in SQL both databases speak, with `?` placeholders
that `_execute` turns into psycopg's `%s`.

The tool creates and migrates its schema (default `ltx_reconcile`, or any name): the
`schema_version` table holds the version, and `MIGRATIONS[n]` takes a schema from version
n to n + 1, forward only, each step in its own transaction under an advisory lock, so two
processes opening a new schema at once do the work once. A schema newer than this version
is refused; one that holds other tables but no `schema_version` is not ours and is refused.

Writers are serialised as SQLite's BEGIN IMMEDIATE serialises them: each outermost write
transaction first locks the one `meta` row, waiting at most `LOCK_TIMEOUT_S`. Reads outside
a transaction run in one REPEATABLE READ transaction, so a snapshot is one serial.

The lease (lease.py, the same rules as on SQLite) is the `lease` row of the schema. Its
short read-and-replace sections (`_lease_section`) take a transaction-scoped advisory lock
named for the schema instead of the `meta` row: two processes racing for the lease queue
on it, while the holder's state writes never wait for someone polling for the lease.

Importing this module needs psycopg 3 (the `postgres` extra). Connection strings follow
libpq, so its environment variables (PGHOST, PGPASSWORD, ...) apply; the password never
appears in `location` or in any message.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from ltx_reconcile.errors import SchemaTooNewError, StateError
from ltx_reconcile.state.codec import (
    ARTIFACT_COLUMNS,
    IMAGE_COLUMNS,
    JOURNAL_COLUMNS,
    artifact_from_row,
    image_from_row,
    journal_entry_from_row,
)
from ltx_reconcile.state.records import (
    OPEN_JOURNAL_STATES,
    ArtifactRecord,
    JournalEntry,
    Pin,
    StateSnapshot,
)
from ltx_reconcile.state.schema import SCHEMA_VERSION
from ltx_reconcile.state.store import BaseStateStore, Clock, Cursor

__all__ = ["DEFAULT_SCHEMA", "LOCK_TIMEOUT_S", "MIGRATIONS", "PostgresStateStore"]

DEFAULT_SCHEMA: Final = "ltx_reconcile"
LOCK_TIMEOUT_S: Final = 10.0
"""How long a write waits for another writer's transaction (SQLite's busy timeout)."""

Migration = Callable[[psycopg.Connection[TupleRow]], None]

_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_OPEN_STATES_SQL: Final = ", ".join(f"'{state}'" for state in sorted(OPEN_JOURNAL_STATES))

# Column types follow schema.py's tables one for one. DOUBLE PRECISION, not REAL (4 bytes
# in PostgreSQL): times and costs must read back exactly as written. BIGINT where SQLite's
# INTEGER holds 64 bits (sizes, nanosecond mtimes, inodes, ids).
_V1_STATEMENTS: Final = (
    """CREATE TABLE meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        lineage TEXT NOT NULL,
        serial BIGINT NOT NULL CHECK (serial >= 0)
    )""",
    # rowid: SQLite's implicit insertion order, made explicit. The newest artifact of a key
    # is the latest created_at, and on a tie the later insert (snapshot.py).
    """CREATE TABLE artifacts (
        digest TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        size BIGINT NOT NULL,
        mime TEXT NOT NULL,
        width INTEGER,
        height INTEGER,
        job_id TEXT,
        model TEXT NOT NULL,
        email TEXT,
        cost DOUBLE PRECISION NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('generated', 'imported', 'refetched')),
        request TEXT,
        rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
    )""",
    "CREATE INDEX artifacts_by_key ON artifacts (key, created_at)",
    """CREATE TABLE images (
        name TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        digest TEXT REFERENCES artifacts (digest) DEFERRABLE INITIALLY DEFERRED,
        output TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('present', 'pending', 'failed', 'unknown')),
        inputs TEXT NOT NULL,
        output_size BIGINT,
        output_mtime_ns BIGINT,
        output_inode BIGINT,
        updated_at DOUBLE PRECISION NOT NULL,
        CHECK ((output_size IS NULL) = (output_mtime_ns IS NULL)
               AND (output_size IS NULL) = (output_inode IS NULL))
    )""",
    "CREATE INDEX images_by_key ON images (key)",
    """CREATE TABLE journal (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        key TEXT NOT NULL,
        image TEXT NOT NULL,
        attempt INTEGER NOT NULL CHECK (attempt >= 1),
        email TEXT NOT NULL,
        reply_ref TEXT NOT NULL,
        request_digest TEXT NOT NULL,
        request TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('submitting', 'submitted', 'completed',
                                             'fetched', 'failed', 'unknown', 'abandoned')),
        job_id TEXT,
        sent_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        message TEXT,
        cost DOUBLE PRECISION NOT NULL DEFAULT 0,
        digest TEXT REFERENCES artifacts (digest) DEFERRABLE INITIALLY DEFERRED,
        extra_of BIGINT REFERENCES journal (id)
    )""",
    "CREATE UNIQUE INDEX journal_reply_ref ON journal (reply_ref) WHERE extra_of IS NULL",
    "CREATE UNIQUE INDEX journal_attempt ON journal (key, attempt) WHERE extra_of IS NULL",
    "CREATE UNIQUE INDEX journal_job_id ON journal (job_id) WHERE job_id IS NOT NULL",
    "CREATE INDEX journal_by_key ON journal (key)",
    # The rule that a record of a paid job is never lost (4.5, step 5), as in schema.py;
    # TRUNCATE skips row triggers, so it gets a statement trigger of its own.
    """CREATE FUNCTION journal_rows_are_never_deleted() RETURNS trigger LANGUAGE plpgsql
       AS $$ BEGIN RAISE EXCEPTION 'journal rows are never deleted'; END $$""",
    """CREATE TRIGGER journal_rows_are_never_deleted BEFORE DELETE ON journal
       FOR EACH ROW EXECUTE FUNCTION journal_rows_are_never_deleted()""",
    """CREATE TRIGGER journal_is_never_truncated BEFORE TRUNCATE ON journal
       FOR EACH STATEMENT EXECUTE FUNCTION journal_rows_are_never_deleted()""",
    """CREATE TABLE uploads (
        digest TEXT NOT NULL,
        email TEXT NOT NULL,
        file_id TEXT NOT NULL,
        uploaded_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (digest, email)
    )""",
    """CREATE TABLE spend (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        job_id TEXT NOT NULL,
        key TEXT NOT NULL,
        image TEXT NOT NULL,
        model TEXT NOT NULL,
        amount DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('generation', 'extra', 'refund')),
        recorded_at DOUBLE PRECISION NOT NULL,
        UNIQUE (job_id, kind)
    )""",
    "CREATE INDEX spend_by_time ON spend (recorded_at)",
    """CREATE TABLE lease (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        lock_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        operation TEXT NOT NULL,
        acquired_at DOUBLE PRECISION NOT NULL,
        heartbeat_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        pid_start TEXT
    )""",
)


def _v1_create_everything(conn: psycopg.Connection[TupleRow]) -> None:
    """Version 0 is an empty schema: create every table and fix the lineage."""
    for statement in _V1_STATEMENTS:
        conn.execute(statement.encode())
    conn.execute("INSERT INTO meta (id, lineage, serial) VALUES (1, %s, 0)", (str(uuid.uuid4()),))


def _v2_protect_and_pins(conn: psycopg.Connection[TupleRow]) -> None:
    """`protect` per image and gc's pins, as schema.py's version 2."""
    conn.execute("ALTER TABLE images ADD COLUMN protect INTEGER NOT NULL DEFAULT 0")
    conn.execute(
        """CREATE TABLE pins (
            digest TEXT PRIMARY KEY,
            note TEXT NOT NULL DEFAULT '',
            pinned_at DOUBLE PRECISION NOT NULL
        )"""
    )


MIGRATIONS: Final[Sequence[Migration]] = (_v1_create_everything, _v2_protect_and_pins)
"""PostgreSQL's steps, one for each of schema.py's: the two backends' versions agree."""


_APPLIES: Final = "applies"
"""The advisory lock every running apply holds shared; a claim's name is its image key
(64 hex digits), so the two can never share a name."""


class PostgresStateStore(BaseStateStore):
    """The state in one schema of a PostgreSQL database, open for reading and writing."""

    def __init__(self, conn: psycopg.Connection[TupleRow], schema: str, clock: Clock) -> None:
        """Use `PostgresStateStore.open`; this only wraps an already configured connection."""
        super().__init__(_location(conn, schema), clock)
        self._conn = conn
        self._schema = schema

    @classmethod
    def open(
        cls,
        conninfo: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        clock: Clock = time.time,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> PostgresStateStore:
        """Connect to `conninfo` (a libpq URL or key=value string) and open the state.

        A missing schema is created with a fresh lineage and serial 0; an older one is
        migrated forward. Raises `SchemaTooNewError` for a schema written by a newer
        ltx-reconcile, and `StateError` for a bad schema name, a server that cannot be
        reached, or a schema that is not an ltx-reconcile state.
        """
        conn = _connect(conninfo, _checked_schema(schema))
        store = cls(conn, schema, clock)
        try:
            store._migrate(migrations)
        except BaseException:
            conn.close()
            raise
        return store

    @classmethod
    @contextlib.contextmanager
    def reading(
        cls, conninfo: str, *, schema: str = DEFAULT_SCHEMA, clock: Clock = time.time
    ) -> Iterator[PostgresStateStore | None]:
        """The state open for reading only (`plan`'s path), or None when there is none yet.

        Creates, migrates and writes nothing: the session is read-only, so a write raises
        `StateError`. Raises like `open`, and `StateError` for a schema older than this
        version (a writing command upgrades it).
        """
        conn = _connect(conninfo, _checked_schema(schema), read_only=True)
        try:
            store = cls(conn, schema, clock)
            version = store._verify_schema(SCHEMA_VERSION)
            if version == 0:
                yield None
                return
            if version < SCHEMA_VERSION:
                raise StateError(
                    f"{store.location} uses state schema {version}; this ltx-reconcile reads "
                    f"{SCHEMA_VERSION}",
                    hint="run `ltx-reconcile apply` once to upgrade the state in place",
                )
            yield store
        finally:
            conn.close()

    @classmethod
    def location_of(cls, conninfo: str, *, schema: str = DEFAULT_SCHEMA) -> str:
        """How messages name the state at `conninfo` (server, database, schema; never the
        password), whether or not it exists yet. Raises `StateError` like `open`."""
        conn = _connect(conninfo, _checked_schema(schema), read_only=True)
        try:
            return _location(conn, schema)
        finally:
            conn.close()

    @classmethod
    def read_snapshot(cls, conninfo: str, *, schema: str = DEFAULT_SCHEMA) -> StateSnapshot | None:
        """The whole state at one serial, read only; None when there is no state yet."""
        with cls.reading(conninfo, schema=schema) as store:
            return None if store is None else store.snapshot()

    @property
    def schema(self) -> str:
        """The PostgreSQL schema that holds this state's tables."""
        return self._schema

    @property
    def in_transaction(self) -> bool:
        """Whether a `transaction()` block is open on this store."""
        return self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def snapshot(self) -> StateSnapshot:
        """A consistent read of the whole state (inside a transaction: as it stands)."""
        if self.in_transaction:
            return self._load_snapshot()
        with self._read_transaction():
            return self._load_snapshot()

    def close(self) -> None:
        """Close the connection; the state stays on the server."""
        self._conn.close()

    @contextlib.contextmanager
    def read_transaction(self) -> Iterator[None]:
        """Group reads (`snapshot`, `total_spend`, ...) so they all see one serial."""
        if self.in_transaction:
            yield
            return
        with self._read_transaction():
            yield

    def latest_attempts(self) -> dict[str, JournalEntry]:
        """Each image's newest journal entry, by image address (snapshot.py's
        `read_latest_attempts`, for the gallery)."""
        sql_text = (
            f"SELECT {JOURNAL_COLUMNS} FROM journal "  # noqa: S608 (constant)
            "WHERE id IN (SELECT MAX(id) FROM journal GROUP BY image)"
        )
        return {row[2]: journal_entry_from_row(row) for row in self._execute(sql_text)}

    # -- several applies at once (issue 8) ---------------------------------------------
    # Session-level advisory locks: they outlive transactions and end with the connection,
    # so a runner killed with SIGKILL (its socket closed by the kernel) holds nothing a
    # moment later, with no expiry to wait for. Each lock is named by a 64-bit hash of a
    # text holding the schema, so two states on one database never contend.

    shared = True

    def try_claim(self, key: str) -> bool:
        """Claim `key` with a session advisory lock; False when another session holds it."""
        return bool(self._lock("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", key))

    def release_claim(self, key: str) -> None:
        """Release one claim on `key` taken by this session."""
        self._lock("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", key)

    def join_applies(self) -> None:
        """Hold the applies lock shared, as every running apply does, until the end."""
        self._lock("SELECT pg_advisory_lock_shared(hashtextextended(%s, 0))", _APPLIES)

    def exclude_applies(self) -> bool:
        """Try the applies lock exclusively: True when no apply runs (and none can start)."""
        return bool(self._lock("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", _APPLIES))

    def end_exclusion(self) -> None:
        """Release the exclusive applies lock `exclude_applies` took."""
        self._lock("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", _APPLIES)

    def _lock(self, query: str, name: str) -> object:
        try:
            row = self._conn.execute(query, (f"ltx-reconcile {self._schema} {name}",)).fetchone()
        except psycopg.Error as err:
            raise self._state_error(err) from err
        return None if row is None else row[0]

    @contextlib.contextmanager
    def _lease_section(self) -> Iterator[None]:
        """One lease read-and-write (lease.py): a transaction under the lease's advisory lock.

        Not `transaction()`: that locks the `meta` row, and a process polling for the lease
        would stall the holder's writes. The advisory lock ends with the transaction, so a
        process killed inside the section (its connection gone) holds nothing.
        """
        try:
            with self._conn.transaction():
                self._conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"ltx-reconcile lease {self._schema}",),
                )
                yield
        except psycopg.Error as err:
            raise self._state_error(err) from err

    @contextlib.contextmanager
    def _savepoint(self) -> Iterator[None]:
        try:
            with self._conn.transaction():
                yield
        except psycopg.Error as err:
            raise self._state_error(err) from err

    @contextlib.contextmanager
    def _outermost(self, has_changed: Callable[[], bool]) -> Iterator[None]:
        try:
            with self._conn.transaction():
                # Lock the meta row first, as SQLite's BEGIN IMMEDIATE takes the write lock:
                # otherwise a transaction could act on what it read before another writer
                # committed (put_artifact's check, then its insert).
                self._conn.execute("SELECT 1 FROM meta FOR UPDATE")
                yield
                if has_changed():
                    self._conn.execute("UPDATE meta SET serial = serial + 1")
        except psycopg.Error as err:
            raise self._state_error(err) from err

    @contextlib.contextmanager
    def _read_transaction(self) -> Iterator[None]:
        # REPEATABLE READ: every query of the block sees the same committed state.
        self._execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield
        finally:
            self._execute("COMMIT")

    def _execute(self, sql_text: str, params: Sequence[object] = ()) -> Cursor:
        """Run one statement written with `?` placeholders (and no `?` inside literals)."""
        query = sql_text.replace("%", "%%").replace("?", "%s").encode()
        try:
            return self._conn.execute(query, params)
        except psycopg.Error as err:
            raise self._state_error(err) from err

    def _insert(
        self, table: str, row: Mapping[str, object], *, replace_key: tuple[str, ...] = ()
    ) -> None:
        # Called inside transaction(), so the DELETE and the INSERT commit together.
        if replace_key:
            self._execute(
                f"DELETE FROM {table} WHERE "  # noqa: S608 (our table and column names)
                + " AND ".join(f"{column} = ?" for column in replace_key),
                [row[column] for column in replace_key],
            )
        self._execute(
            f"INSERT INTO {table} ({', '.join(row)}) "  # noqa: S608 (our table and column names)
            f"VALUES ({', '.join('?' for _ in row)})",
            list(row.values()),
        )

    def _load_snapshot(self) -> StateSnapshot:
        lineage, serial = self._execute("SELECT lineage, serial FROM meta").fetchone()
        rows = self._execute(f"SELECT {IMAGE_COLUMNS} FROM images")  # noqa: S608 (constant)
        images = {row[0]: image_from_row(row) for row in rows}
        artifacts: dict[str, ArtifactRecord] = {}
        by_key: dict[str, ArtifactRecord] = {}
        # Oldest first, ties in insertion order: the last record of a key is its newest.
        sql_text = f"SELECT {ARTIFACT_COLUMNS} FROM artifacts ORDER BY created_at, rowid"  # noqa: S608 (constant)
        for row in self._execute(sql_text):
            record = artifacts[row[0]] = artifact_from_row(row)
            by_key[record.key] = record
        uploads = {
            (digest, email): file_id
            for digest, email, file_id in self._execute(
                "SELECT digest, email, file_id FROM uploads"
            )
        }
        pins = {
            digest: Pin(digest, note, pinned_at)
            for digest, note, pinned_at in self._execute("SELECT digest, note, pinned_at FROM pins")
        }
        return StateSnapshot(
            path=Path(self.location),
            lineage=lineage,
            serial=serial,
            images=images,
            artifacts_by_key=by_key,
            artifacts=artifacts,
            open_jobs=self._load_open_jobs(),
            uploads=uploads,
            pins=pins,
        )

    def _load_open_jobs(self) -> dict[str, tuple[JournalEntry, ...]]:
        grouped: defaultdict[str, list[JournalEntry]] = defaultdict(list)
        sql_text = (
            f"SELECT {JOURNAL_COLUMNS} FROM journal WHERE state IN ({_OPEN_STATES_SQL}) ORDER BY id"  # noqa: S608 (constant)
        )
        for row in self._execute(sql_text):
            entry = journal_entry_from_row(row)
            grouped[entry.key].append(entry)
        return {key: tuple(entries) for key, entries in grouped.items()}

    def _state_error(self, err: psycopg.Error) -> StateError:
        message = _message(err)
        if isinstance(err, psycopg.errors.LockNotAvailable):
            return StateError(
                f"state {self.location} stayed busy for {LOCK_TIMEOUT_S:.0f} s: {message}",
                hint="another ltx-reconcile is writing it; try again when it has finished",
            )
        return StateError(f"cannot write state {self.location}: {message}")

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        version = self._verify_schema(len(migrations))
        for target in range(version + 1, len(migrations) + 1):
            self._run_migration(migrations[target - 1], target)

    def _verify_schema(self, supported: int) -> int:
        """The schema's version (0: no such schema yet), after checking that we may use it."""
        qualified = f"{self._schema}.schema_version"
        if self._execute("SELECT to_regclass(?)", (qualified,)).fetchone()[0] is None:
            if self._execute(_SQL_HAS_RELATIONS, (self._schema,)).fetchone() is not None:
                raise StateError(
                    f"schema {self._schema} of {self.location} holds tables but is not an "
                    "ltx-reconcile state",
                    hint="name another schema for the state, or move those tables away",
                )
            return 0
        row = self._execute("SELECT version FROM schema_version").fetchone()
        version = 0 if row is None else int(row[0])
        if version > supported:
            raise SchemaTooNewError(
                f"{self.location} was written by a newer ltx-reconcile "
                f"(state schema {version}; this version understands up to {supported})",
                hint="upgrade ltx-reconcile to use this state; nothing was changed",
            )
        return version

    def _run_migration(self, migration: Migration, target: int) -> None:
        conn = self._conn
        try:
            with conn.transaction():
                # One migrator at a time, and re-read under the lock: another process may
                # have just done this step (or created the schema).
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"ltx-reconcile schema {self._schema}",),
                )
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema))
                )
                conn.execute(_SQL_CREATE_VERSION_TABLE)
                row = conn.execute("SELECT version FROM schema_version").fetchone()
                if row is not None and int(row[0]) >= target:
                    return
                migration(conn)
                conn.execute(_SQL_SET_VERSION, (target,))
        except psycopg.Error as err:
            raise StateError(
                f"cannot upgrade state {self.location} to schema {target}: {_message(err)}",
                hint=f"the schema was left at version {target - 1}, unchanged; please report this",
            ) from err


_SQL_HAS_RELATIONS: Final = (
    "SELECT 1 FROM pg_class JOIN pg_namespace ON pg_namespace.oid = pg_class.relnamespace "
    "WHERE pg_namespace.nspname = ? LIMIT 1"
)
_SQL_CREATE_VERSION_TABLE: Final = """CREATE TABLE IF NOT EXISTS schema_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL CHECK (version >= 0)
)"""
_SQL_SET_VERSION: Final = (
    "INSERT INTO schema_version (id, version) VALUES (1, %s) "
    "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version"
)


def _checked_schema(schema: str) -> str:
    """`schema`, if it is a plain lower-case identifier; it is spliced into DDL."""
    if _SCHEMA_NAME.fullmatch(schema) is None:
        raise StateError(
            f"{schema!r} cannot name the state's PostgreSQL schema",
            hint="use lower-case letters, digits and underscores, starting with a letter",
        )
    return schema


def _connect(
    conninfo: str, schema: str, *, read_only: bool = False
) -> psycopg.Connection[TupleRow]:
    # autocommit: psycopg must never open transactions behind our back; every transaction
    # is an explicit transaction() block (as the SQLite store's isolation_level=None).
    try:
        conn = psycopg.connect(conninfo, autocommit=True, application_name="ltx-reconcile")
    except psycopg.Error as err:
        # from None: the cause's text may hold the password, and tracebacks get logged.
        raise StateError(
            f"cannot connect to the PostgreSQL state: {_redact(_message(err), conninfo)}",
            hint="check the URL and that the server is up; PG* environment variables apply",
        ) from None
    try:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{LOCK_TIMEOUT_S:.0f}s")))
        if read_only:
            conn.execute("SET default_transaction_read_only = on")
    except psycopg.Error as err:
        conn.close()
        raise StateError(f"cannot use the PostgreSQL state: {_message(err)}") from err
    return conn


def _location(conn: psycopg.Connection[TupleRow], schema: str) -> str:
    info = conn.info
    return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname} (schema {schema})"


def _message(err: psycopg.Error) -> str:
    """The server's one-line message, else psycopg's text, without trailing newlines."""
    primary = err.diag.message_primary if isinstance(err, psycopg.DatabaseError) else None
    return (primary or str(err)).strip()


_URL_PASSWORD: Final = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_KEYWORD_PASSWORD: Final = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def _redact(text: str, conninfo: str) -> str:
    """`text` without the password `conninfo` carries, however libpq quoted it back."""
    with contextlib.suppress(psycopg.Error):
        password = conninfo_to_dict(conninfo).get("password")
        if password:
            text = text.replace(str(password), "***")
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _KEYWORD_PASSWORD.sub(r"\1***", text)
