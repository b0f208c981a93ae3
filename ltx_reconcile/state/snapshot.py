"""The read path: one consistent snapshot of the state, fast, without writing anything.

`plan` must answer in well under half a second for 10,000 images, interpreter start
included, so this module imports only the standard library (sqlite-utils alone costs 70 ms
to import), reads each table with one query inside one read transaction, and leaves JSON
columns unparsed until someone looks into them. It never creates a file, takes no lease,
and never changes the serial.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar, cast
from urllib.parse import quote

from ltx_reconcile.errors import StateError
from ltx_reconcile.state.codec import (
    ARTIFACT_COLUMNS,
    IMAGE_COLUMNS,
    JOURNAL_COLUMNS,
    Row,
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
from ltx_reconcile.state.schema import SCHEMA_VERSION, verify_schema

__all__ = [
    "load_snapshot",
    "open_snapshot",
    "read_latest_attempts",
    "read_snapshot",
    "read_spend_since",
]

_R = TypeVar("_R")

_OPEN_STATES_SQL = ", ".join(f"'{state}'" for state in sorted(OPEN_JOURNAL_STATES))


def read_snapshot(path: Path) -> StateSnapshot:
    """Read the state at `path`; a missing file reads as an empty state (lineage None).

    Raises `SchemaTooNewError` for a file from a newer ltx-reconcile, and `StateError` for
    a file that is not a state, is older than this version (a write command upgrades it),
    or cannot be read.
    """
    if not path.exists():
        return StateSnapshot(path=path, lineage=None, serial=0)
    try:
        conn = _connect_for_reading(path)
    except sqlite3.Error as err:
        raise StateError(f"cannot read state {path}: {err}") from err
    try:
        return load_snapshot(conn, path)
    except sqlite3.Error as err:
        raise StateError(f"cannot read state {path}: {err}") from err
    finally:
        conn.close()


@contextlib.contextmanager
def open_snapshot(path: Path) -> Iterator[StateSnapshot]:
    """`read_snapshot` for one pass such as a plan: artifact rows are read when looked up.

    A plan looks up only the artifacts it could reuse for an image that changed, and
    reading every artifact row up front was a sixth of a 100,000-image plan's time and a
    fifth of its memory. Everything else is read at once, as `read_snapshot` reads it, and
    the artifact rows come through the same read transaction, which stays open until the
    block ends, so they agree with the rest. Looking up an artifact not read by then raises
    `StateError`. Raises like `read_snapshot`.
    """
    if not path.exists():
        yield StateSnapshot(path=path, lineage=None, serial=0)
        return
    try:
        conn = _connect_for_reading(path)
    except sqlite3.Error as err:
        raise StateError(f"cannot read state {path}: {err}") from err
    artifacts: _ArtifactsOnDemand | None = None
    try:
        try:
            conn.execute("BEGIN")
            snapshot = _load(conn, path, lambda: _index_artifacts(conn, path))
        except sqlite3.Error as err:
            raise StateError(f"cannot read state {path}: {err}") from err
        if isinstance(snapshot.artifacts, _ArtifactsOnDemand):
            artifacts = snapshot.artifacts
        yield snapshot
    finally:
        if artifacts is not None:
            artifacts.close()
        conn.close()  # ends the read transaction; nothing was written


def _connect_for_reading(path: Path) -> sqlite3.Connection:
    # Not `mode=ro` when we can write: a read-only connection to a WAL file creates -wal
    # and -shm files and cannot remove them when it closes, and the state file is committed
    # to git by GitOps users. A read-write connection with query_only removes them as the
    # last one out, and `mode=rw` (unlike the default) still never creates the file.
    is_writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    mode = "rw" if is_writable else "ro"
    uri = f"file:{quote(str(path.resolve()))}?mode={mode}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA query_only = ON")
    return conn


def load_snapshot(conn: sqlite3.Connection, path: Path) -> StateSnapshot:
    """Read every table through `conn` inside one read transaction, so they agree."""
    own_transaction = not conn.in_transaction
    if own_transaction:
        conn.execute("BEGIN")
    try:
        return _load(conn, path, lambda: _load_artifacts(conn))
    finally:
        if own_transaction:
            conn.execute("COMMIT")


_Artifacts = tuple[Mapping[str, ArtifactRecord], "_ArtifactsByKey"]


def _load(
    conn: sqlite3.Connection, path: Path, load_artifacts: Callable[[], _Artifacts]
) -> StateSnapshot:
    version = verify_schema(conn, path, SCHEMA_VERSION)
    if version == 0:
        return StateSnapshot(path=path, lineage=None, serial=0)
    if version < SCHEMA_VERSION:
        raise StateError(
            f"{path} uses state schema {version}; this ltx-reconcile reads {SCHEMA_VERSION}",
            hint="run `ltx-reconcile apply` once to upgrade the state file in place",
        )
    return _load_tables(conn, path, load_artifacts)


def _load_tables(
    conn: sqlite3.Connection, path: Path, load_artifacts: Callable[[], _Artifacts]
) -> StateSnapshot:
    lineage, serial = conn.execute("SELECT lineage, serial FROM meta").fetchone()
    sql = f"SELECT {IMAGE_COLUMNS} FROM images"  # noqa: S608 (constant)
    images = _LazyRecords({row[0]: row for row in conn.execute(sql)}, image_from_row)
    artifacts, artifacts_by_key = load_artifacts()
    uploads = {
        (digest, email): file_id
        for digest, email, file_id in conn.execute("SELECT digest, email, file_id FROM uploads")
    }
    pins = {
        digest: Pin(digest, note, pinned_at)
        for digest, note, pinned_at in conn.execute("SELECT digest, note, pinned_at FROM pins")
    }
    return StateSnapshot(
        path=path,
        lineage=lineage,
        serial=serial,
        images=images,
        artifacts_by_key=artifacts_by_key,
        artifacts=artifacts,
        open_jobs=_load_open_jobs(conn),
        uploads=uploads,
        pins=pins,
    )


def _load_artifacts(
    conn: sqlite3.Connection,
) -> tuple[_LazyRecords[ArtifactRecord], _ArtifactsByKey]:
    sql = f"SELECT {ARTIFACT_COLUMNS} FROM artifacts"  # noqa: S608 (constant)
    rows: dict[str, Row] = {}
    newest: dict[str, Row] = {}
    for row in conn.execute(sql):
        rows[row[0]] = row
        # Rows come in insertion order, so on a tie of created_at the later insert wins.
        known = newest.get(row[1])
        if known is None or row[10] >= known[10]:
            newest[row[1]] = row
    artifacts = _LazyRecords(rows, artifact_from_row)
    return artifacts, _ArtifactsByKey({key: row[0] for key, row in newest.items()}, artifacts)


def _index_artifacts(conn: sqlite3.Connection, path: Path) -> _Artifacts:
    """Every artifact's digest and each key's newest digest, the rows left for later."""
    # Ordered as _load_artifacts decides: the newest created_at wins, then the later insert.
    sql = "SELECT key, digest FROM artifacts ORDER BY key, created_at, rowid"
    pairs = conn.execute(sql).fetchall()
    artifacts = _ArtifactsOnDemand(conn, path, (digest for _key, digest in pairs))
    return artifacts, _ArtifactsByKey(dict(pairs), artifacts)


class _LazyRecords(Mapping[str, _R]):
    """Records by name or digest, each decoded from its row the first time it is looked up.

    The rows are read eagerly, inside the snapshot's transaction, so the view stays
    consistent; only building the frozen records waits. A warm plan looks up few of the
    artifacts (only images that need a create are checked for one to reuse), and building
    20,000 records up front would take longer than the whole read does without it.
    """

    __slots__ = ("_decode", "_values")

    def __init__(self, rows: dict[str, Row], decode: Callable[[Row], _R]) -> None:
        # One dict, each value a row until it is decoded and then its record: the row
        # goes as its record comes (100,000 of each would not fit the memory budget).
        self._values: dict[str, Row | _R] = rows  # type: ignore[assignment]
        self._decode = decode

    def __getitem__(self, name: str) -> _R:
        return self._decoded(name, self._values[name])

    def get(self, name: str, default: _R | None = None) -> _R | None:  # type: ignore[override]
        # Mapping.get goes through __getitem__ and a KeyError per miss: the planner asks
        # once per image, so this is on its hot path.
        value = self._values.get(name)
        return default if value is None else self._decoded(name, value)

    def _decoded(self, name: str, value: Row | _R) -> _R:
        # A raw row is exactly a tuple; a decoded record may be a tuple subclass.
        if type(value) is not tuple:
            return cast(_R, value)
        record = self._values[name] = self._decode(value)
        return record

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class _ArtifactsOnDemand(Mapping[str, ArtifactRecord]):
    """Every artifact by digest, each row read when it is first looked up (`open_snapshot`).

    The digests are known from the start, so membership, iteration and length cost no read.
    """

    __slots__ = ("_conn", "_path", "_records")

    def __init__(self, conn: sqlite3.Connection, path: Path, digests: Iterable[str]) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._records: dict[str, ArtifactRecord | None] = dict.fromkeys(digests)

    def __getitem__(self, digest: str) -> ArtifactRecord:
        record = self._records[digest]
        if record is None:
            record = self._records[digest] = self._read(digest)
        return record

    def _read(self, digest: str) -> ArtifactRecord:
        if self._conn is None:
            raise StateError(
                f"artifact {digest} was looked up after its snapshot of {self._path} was closed"
            )
        sql = f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE digest = ?"  # noqa: S608 (constant)
        try:
            row = self._conn.execute(sql, (digest,)).fetchone()
        except sqlite3.Error as err:
            raise StateError(f"cannot read state {self._path}: {err}") from err
        return artifact_from_row(row)

    def close(self) -> None:
        """The read transaction is over: rows not read by now cannot be."""
        self._conn = None

    def __contains__(self, digest: object) -> bool:
        return digest in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


class _ArtifactsByKey(Mapping[str, ArtifactRecord]):
    """The newest artifact of each key: the same records as the by-digest view."""

    __slots__ = ("_artifacts", "_digests")

    def __init__(self, digests: dict[str, str], artifacts: Mapping[str, ArtifactRecord]) -> None:
        self._digests = digests
        self._artifacts = artifacts

    def __getitem__(self, key: str) -> ArtifactRecord:
        return self._artifacts[self._digests[key]]

    def __contains__(self, key: object) -> bool:
        return key in self._digests

    def __iter__(self) -> Iterator[str]:
        return iter(self._digests)

    def __len__(self) -> int:
        return len(self._digests)


def _load_open_jobs(conn: sqlite3.Connection) -> dict[str, tuple[JournalEntry, ...]]:
    grouped: defaultdict[str, list[JournalEntry]] = defaultdict(list)
    sql = f"SELECT {JOURNAL_COLUMNS} FROM journal WHERE state IN ({_OPEN_STATES_SQL}) ORDER BY id"  # noqa: S608 (constant)
    for row in conn.execute(sql):
        entry = journal_entry_from_row(row)
        grouped[entry.key].append(entry)
    return {key: tuple(entries) for key, entries in grouped.items()}


def read_latest_attempts(path: Path) -> dict[str, JournalEntry]:
    """Each image's newest journal entry, by image address (the gallery's `failed` status).

    An image whose last attempt failed has no image row, so only the journal knows. A
    missing state reads as no attempts. Raises like `read_snapshot`.
    """
    if not path.exists():
        return {}
    sql = (
        f"SELECT {JOURNAL_COLUMNS} FROM journal "  # noqa: S608 (constant)
        "WHERE id IN (SELECT MAX(id) FROM journal GROUP BY image)"
    )
    try:
        conn = _connect_for_reading(path)
        try:
            if verify_schema(conn, path, SCHEMA_VERSION) == 0:
                return {}
            return {row[2]: journal_entry_from_row(row) for row in conn.execute(sql)}
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise StateError(f"cannot read state {path}: {err}") from err


def read_spend_since(path: Path, since: float) -> float:
    """Credits the spend ledger recorded from `since` (epoch seconds) on, refunds deducted.

    What `StateStore.spend_since` answers, for `plan`'s budget figures, which must not open
    the state for writing. A missing state has spent nothing. Raises like `read_snapshot`.
    """
    if not path.exists():
        return 0.0
    sql = "SELECT TOTAL(amount) FROM spend WHERE recorded_at >= ?"
    try:
        conn = _connect_for_reading(path)
        try:
            if verify_schema(conn, path, SCHEMA_VERSION) == 0:
                return 0.0
            return float(conn.execute(sql, (since,)).fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise StateError(f"cannot read state {path}: {err}") from err
