"""StateStore: the SQLite state file, its schema, its serial and its write transactions.

The store owns one connection to `state/state.db`. It creates the file on first use,
migrates older schemas forward and refuses newer ones (schema.py), and groups writes in
transactions: every committed transaction that changed at least one row of the state
increments `serial` exactly once, and a rolled-back one changes nothing. The lease
(lease.py) and the journal (journal.py) live in the same file and write through the same
transactions; lease writes are coordination, not state, and do not count.

`BaseStateStore` holds what every SQL backend shares: the serial's bookkeeping across
nested transactions and every record method, written once in the SQL that SQLite and
PostgreSQL both speak, with `?` placeholders (postgres.py translates them). A backend adds
its connection, its transactions, its snapshot and how it replaces a row.

sqlite-utils is imported only by `StateStore.open`: `read_snapshot`, which `plan` uses,
must not pay for it (see snapshot.py).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, Self, TypeVar

from ltx_reconcile.errors import IntegrityError, StateError
from ltx_reconcile.state.codec import (
    IMAGE_COLUMNS,
    artifact_to_row,
    image_from_row,
    image_to_row,
)
from ltx_reconcile.state.records import (
    ArtifactRecord,
    ImageRecord,
    SpendKind,
    StateSnapshot,
    Upload,
)
from ltx_reconcile.state.schema import MIGRATIONS, Migration, verify_schema
from ltx_reconcile.state.snapshot import load_snapshot, read_snapshot

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = ["BUSY_TIMEOUT_S", "BaseStateStore", "Cursor", "StateStore"]

BUSY_TIMEOUT_S: Final = 10.0
"""How long a write waits for another process's write transaction (not for its lease)."""

Clock = Callable[[], float]
_T = TypeVar("_T")


class Cursor(Protocol):
    """What a statement returns, on either database: rows to fetch, and a row count."""

    @property
    def rowcount(self) -> int:
        """How many rows the statement changed."""
        ...

    # Any: a row's shape depends on the statement; codec.py decodes it.
    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        ...

    def __iter__(self) -> Iterator[Any]: ...


class BaseStateStore(ABC):
    """The serial's rules and the record methods, shared by every SQL backend.

    Subclasses provide the connection (`_execute`, `in_transaction`), the transactions
    (`_savepoint`, `_outermost`), `snapshot`, `_insert` and `close`. Every SQL statement
    here is common to SQLite and PostgreSQL, with `?` placeholders.
    """

    def __init__(self, location: str, clock: Clock) -> None:
        """`location` names the state in messages; it never holds a password."""
        self._location = location
        self._clock = clock
        self._changed = False

    @property
    def location(self) -> str:
        """Where the state lives, for messages: a file path or a database without password."""
        return self._location

    @property
    def clock(self) -> Clock:
        """The clock every timestamp this store writes comes from."""
        return self._clock

    @property
    @abstractmethod
    def in_transaction(self) -> bool:
        """Whether a `transaction()` block is open on this store."""

    @property
    def lineage(self) -> str:
        """The id fixed when this state was created."""
        lineage: str = self._execute("SELECT lineage FROM meta").fetchone()[0]
        return lineage

    @property
    def serial(self) -> int:
        """The number of committed transactions that changed the state."""
        serial: int = self._execute("SELECT serial FROM meta").fetchone()[0]
        return serial

    @abstractmethod
    def snapshot(self) -> StateSnapshot:
        """A consistent read of the whole state (inside a transaction: as it stands)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all of them commit together, or none does.

        Nested blocks become savepoints; only the outermost commit counts towards the
        serial, once, and only if something changed. Any exception rolls the block back and
        propagates. Raises `StateError` when the database refuses the write or the commit.
        """
        if self.in_transaction:
            changed_before = self._changed
            try:
                with self._savepoint():
                    yield
            except BaseException:
                self._changed = changed_before
                raise
            return
        self._changed = False
        try:
            with self._outermost(lambda: self._changed):
                yield
        finally:
            self._changed = False

    @abstractmethod
    def _savepoint(self) -> contextlib.AbstractContextManager[None]:
        """A nested block: rolled back alone on any exception."""

    @abstractmethod
    def _outermost(
        self, has_changed: Callable[[], bool]
    ) -> contextlib.AbstractContextManager[None]:
        """The outermost block: bumps the serial before COMMIT when `has_changed()`."""

    def image(self, name: str) -> ImageRecord | None:
        """The record of image `name` as it stands now, or None."""
        row = self._execute(
            f"SELECT {IMAGE_COLUMNS} FROM images WHERE name = ?",  # noqa: S608 (constant)
            (name,),
        ).fetchone()
        return None if row is None else image_from_row(row)

    def put_image(self, record: ImageRecord) -> None:
        """Record `record` under its name, replacing what was there."""
        with self.transaction():
            self._insert("images", image_to_row(record), replace_key=("name",))
            self._mark_changed()

    def remove_image(self, name: str) -> bool:
        """Stop tracking `name`; its artifacts and journal stay. False if it was not there."""
        with self.transaction():
            return self._write("DELETE FROM images WHERE name = ?", (name,)) > 0

    def rename_image(self, old: str, new: str) -> None:
        """Move the record of `old` to `new`, keeping everything else.

        Raises `StateError` when `old` is not in the state or `new` already is.
        """
        with self.transaction():
            if self._execute("SELECT 1 FROM images WHERE name = ?", (new,)).fetchone():
                raise StateError(
                    f"cannot rename image {old} to {new} in {self._location}: "
                    f"{new} is already tracked"
                )
            if self._write("UPDATE images SET name = ? WHERE name = ?", (new, old)) == 0:
                raise StateError(
                    f"cannot rename image {old} in {self._location}: it is not in the state"
                )

    def put_artifact(self, record: ArtifactRecord) -> bool:
        """Record a stored object; False, changing nothing, if its digest is already known.

        The first record of a digest keeps its provenance for good. Raises `IntegrityError`
        if the known row disagrees about the object's size: same digest, different bytes.
        """
        with self.transaction():
            known = self._execute(
                "SELECT size FROM artifacts WHERE digest = ?", (record.digest,)
            ).fetchone()
            if known is None:
                self._insert("artifacts", artifact_to_row(record))
                self._mark_changed()
                return True
            if known[0] != record.size:
                raise IntegrityError(
                    f"artifact {record.digest} is recorded in {self._location} with "
                    f"{known[0]} bytes, but {record.size} bytes were offered",
                    hint="run `ltx-reconcile verify` to find the corrupt object",
                )
            return False

    def put_upload(self, upload: Upload) -> None:
        """Remember the API's fileId for a reference image on one account."""
        with self.transaction():
            row = {
                "digest": upload.digest,
                "email": upload.email,
                "file_id": upload.file_id,
                "uploaded_at": upload.uploaded_at,
            }
            self._insert("uploads", row, replace_key=("digest", "email"))
            self._mark_changed()

    def pin(self, digest: str, note: str) -> bool:
        """Keep the object `digest` through `gc`; False, changing nothing, if already pinned."""
        with self.transaction():
            return (
                self._write(
                    "INSERT INTO pins (digest, note, pinned_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (digest) DO NOTHING",
                    (digest, note, self._clock()),
                )
                > 0
            )

    def unpin(self, digest: str) -> bool:
        """Let `gc` collect the object `digest` again; False if it was not pinned."""
        with self.transaction():
            return self._write("DELETE FROM pins WHERE digest = ?", (digest,)) > 0

    def record_spend(
        self, job_id: str, key: str, image: str, model: str, amount: float, kind: SpendKind
    ) -> bool:
        """Add a line to the spend ledger; False if this job's line of this kind exists.

        Recording the same charge twice is a no-op, so a resumed apply cannot double-count;
        a different amount for the same charge raises `StateError`.
        """
        with self.transaction():
            inserted = self._write(
                "INSERT INTO spend (job_id, key, image, model, amount, kind, recorded_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, kind) DO NOTHING",
                (job_id, key, image, model, float(amount), kind, self._clock()),
            )
            if inserted:
                return True
            (known,) = self._execute(
                "SELECT amount FROM spend WHERE job_id = ? AND kind = ?", (job_id, kind)
            ).fetchone()
            if known != amount:
                raise StateError(
                    f"job {job_id} is already in the spend ledger of {self._location} as "
                    f"{kind} of {known} credits, not {amount}"
                )
            return False

    def spend_since(self, since: float) -> float:
        """Credits spent from time `since` (seconds since the epoch) on, refunds deducted."""
        row = self._execute(
            "SELECT COALESCE(SUM(amount), 0.0) FROM spend WHERE recorded_at >= ?", (since,)
        ).fetchone()
        return float(row[0])

    def total_spend(self) -> float:
        """Credits spent since the state was created, refunds deducted."""
        return float(self._execute("SELECT COALESCE(SUM(amount), 0.0) FROM spend").fetchone()[0])

    # Several applies at once (issue 8): claims on keys, and a way to keep applies out.

    shared: bool = False
    """Whether several applies may work through this state at once, each claiming keys."""

    @abstractmethod
    def try_claim(self, key: str) -> bool:
        """Claim `key`'s generation for this connection: True if no other holds it.

        A claim lasts until `release_claim` or until the connection ends (a killed
        runner's claims go with it). Taking a claim already ours succeeds again, and needs
        one more `release_claim`.
        """

    @abstractmethod
    def release_claim(self, key: str) -> None:
        """Give back one claim on `key` taken by `try_claim`."""

    @abstractmethod
    def join_applies(self) -> None:
        """Mark this connection as a running apply, until it closes: `exclude_applies`
        elsewhere waits for it."""

    @abstractmethod
    def exclude_applies(self) -> bool:
        """Keep every apply out until `end_exclusion` (or the connection ends); False,
        holding nothing, while one runs."""

    @abstractmethod
    def end_exclusion(self) -> None:
        """Let applies in again after `exclude_applies`."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Package-private: journal.py and lease.py write through these, inside transaction().

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        """Run one statement (`?` placeholders) that does not by itself count as a change."""

    @abstractmethod
    def _insert(
        self, table: str, row: Mapping[str, object], *, replace_key: tuple[str, ...] = ()
    ) -> None:
        """Insert `row`; with `replace_key`, first drop the row holding the same key.

        Replacing drops the old row whole, as SQLite's INSERT OR REPLACE does, so a column
        the new row leaves out takes its default again.
        """

    def _write(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one statement that changes the state; returns how many rows it touched."""
        count = self._execute(sql, params).rowcount
        if count > 0:
            self._mark_changed()
        return count

    def _mark_changed(self) -> None:
        self._changed = True


class StateStore(BaseStateStore):
    """The state file, open for reading and writing; see the package docstring."""

    def __init__(self, db: Database, path: Path, clock: Clock) -> None:
        """Use `StateStore.open`; this only wraps an already configured connection."""
        super().__init__(str(path), clock)
        self._db = db
        self._conn = db.conn
        self._path = path

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        clock: Clock = time.time,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> StateStore:
        """Open the state at `path`, creating it (and its directory) when missing.

        A new state gets a fresh lineage and serial 0; an older schema is migrated forward,
        each step in its own transaction. Raises `SchemaTooNewError` for a state written by
        a newer ltx-reconcile, and `StateError` when the file cannot be opened or upgraded.
        """
        from sqlite_utils import Database

        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = _connect(path)
        except (OSError, sqlite3.Error) as err:
            raise StateError(
                f"cannot open state {path}: {err}",
                hint="check that the directory exists and is writable",
            ) from err
        store = cls(Database(conn, execute_plugins=False), path, clock)
        try:
            store._migrate(migrations)
        except BaseException:
            conn.close()
            raise
        return store

    @classmethod
    def read_snapshot(cls, path: Path | str) -> StateSnapshot:
        """Read the state at `path` without opening it for writing; see snapshot.py.

        A missing file reads as an empty state and is not created. Raises like `open`.
        """
        return read_snapshot(Path(path))

    @property
    def path(self) -> Path:
        """Where the state file is."""
        return self._path

    @property
    def in_transaction(self) -> bool:
        """Whether a `transaction()` block is open on this store."""
        return self._conn.in_transaction

    # One writer at a time: an apply holds the lease for its whole run, so every key is
    # its own and there is no other apply to wait for.

    def try_claim(self, key: str) -> bool:  # noqa: ARG002 (every key is ours)
        """Always True: the lease makes this process the only writer."""
        return True

    def release_claim(self, key: str) -> None:
        """Nothing to release (see `try_claim`)."""

    def join_applies(self) -> None:
        """Nothing to do: the apply holds the lease throughout."""

    def exclude_applies(self) -> bool:
        """Always True: no apply runs outside the lease on a state file."""
        return True

    def end_exclusion(self) -> None:
        """Nothing to release (see `exclude_applies`)."""

    def snapshot(self) -> StateSnapshot:
        """A consistent read of the whole state (inside a transaction: as it stands)."""
        return self._guarded(lambda: load_snapshot(self._conn, self._path))

    @contextlib.contextmanager
    def _savepoint(self) -> Iterator[None]:
        with self._db.atomic():
            yield

    @contextlib.contextmanager
    def _outermost(self, has_changed: Callable[[], bool]) -> Iterator[None]:
        # IMMEDIATE, not the deferred BEGIN of Database.atomic(): a deferred transaction
        # that reads before it writes fails at once with SQLITE_BUSY when another process
        # committed in between, instead of waiting under busy_timeout like this one does.
        self._guarded(lambda: self._conn.execute("BEGIN IMMEDIATE"))
        try:
            yield
            if has_changed():
                self._conn.execute("UPDATE meta SET serial = serial + 1")
            self._conn.execute("COMMIT")
        except BaseException as err:
            # A failed COMMIT (a deferred foreign key, say) leaves the transaction open.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if isinstance(err, sqlite3.Error):
                raise self._state_error(err) from err
            raise

    def close(self) -> None:
        """Checkpoint the WAL into the state file and close it.

        Afterwards no `-wal` or `-shm` file is left beside the state (unless another
        process still has it open): the file alone is the state, ready to commit to git.
        """
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()

    def _execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        """Run one statement that does not, by itself, count as a change of state."""
        return self._guarded(lambda: self._conn.execute(sql, params))

    def _insert(
        self, table: str, row: Mapping[str, object], *, replace_key: tuple[str, ...] = ()
    ) -> None:
        # sqlite-utils' replace is INSERT OR REPLACE, which drops the old row whole.
        self._guarded(lambda: self._db.table(table).insert(dict(row), replace=bool(replace_key)))

    def _guarded(self, action: Callable[[], _T]) -> _T:
        try:
            return action()
        except sqlite3.Error as err:
            raise self._state_error(err) from err

    def _state_error(self, err: sqlite3.Error) -> StateError:
        if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
            return StateError(
                f"state {self._path} stayed busy for {BUSY_TIMEOUT_S:.0f} s: {err}",
                hint="another ltx-reconcile is writing it; try again when it has finished",
            )
        return StateError(f"cannot write state {self._path}: {err}")

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        version = self._guarded(lambda: verify_schema(self._conn, self._path, len(migrations)))
        for target in range(version + 1, len(migrations) + 1):
            self._run_migration(migrations[target - 1], target)

    def _run_migration(self, migration: Migration, target: int) -> None:
        try:
            with self.transaction():
                # Re-read under the write lock: another process may have just done this step.
                if self._execute("PRAGMA user_version").fetchone()[0] >= target:
                    return
                migration(self._conn)
                self._conn.execute(f"PRAGMA user_version = {int(target)}")
        except StateError as err:
            raise StateError(
                f"cannot upgrade state {self._path} to schema {target}: {err.__cause__ or err}",
                hint=f"the file was left at schema {target - 1}, unchanged; please report this",
            ) from err


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: the sqlite3 module must never open transactions behind our back;
    # every transaction is an explicit transaction() block.
    # check_same_thread=False: an apply writes from its state thread (state/worker.py), one
    # call at a time; the connection is never used by two threads at once.
    conn = sqlite3.connect(
        path, isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode = WAL")
    # synchronous=FULL, not NORMAL: under WAL, NORMAL can lose the last commits on power
    # loss, and the last commit may be the intent row that stops us paying twice.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn
