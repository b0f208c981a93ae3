"""The state's SQL schema and the migrations that build it, one version at a time.

A state file's schema version is SQLite's `user_version`; `MIGRATIONS[n]` takes a file from
version n to n + 1. `StateStore.open` runs each pending migration in its own transaction, so
a failure leaves the file at the last version that completed. Migrations only ever move
forward; a file newer than `SCHEMA_VERSION` is refused, never downgraded (ADR 0002).

This module is pure DDL over stdlib `sqlite3`: no sqlite-utils, so the read path can share
its constants without paying for that import.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from ltx_reconcile.errors import SchemaTooNewError, StateError

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "Migration", "verify_schema"]

Migration = Callable[[sqlite3.Connection], None]

APPLICATION_ID: Final = 0x4C545852
"""`PRAGMA application_id` of every state file: "LTXR". Tells our files from other SQLite."""

_V1_STATEMENTS: Final = (
    # One row. lineage never changes; serial counts committed changes (see store.py).
    """CREATE TABLE meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        lineage TEXT NOT NULL,
        serial INTEGER NOT NULL CHECK (serial >= 0)
    )""",
    """CREATE TABLE artifacts (
        digest TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        size INTEGER NOT NULL,
        mime TEXT NOT NULL,
        width INTEGER,
        height INTEGER,
        job_id TEXT,
        model TEXT NOT NULL,
        email TEXT,
        cost REAL NOT NULL,
        created_at REAL NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('generated', 'imported', 'refetched')),
        request TEXT
    )""",
    "CREATE INDEX artifacts_by_key ON artifacts (key, created_at)",
    # The artifact references are DEFERRABLE so a writer may record the image and its
    # artifact in either order inside one transaction; they are checked at COMMIT.
    """CREATE TABLE images (
        name TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        digest TEXT REFERENCES artifacts (digest) DEFERRABLE INITIALLY DEFERRED,
        output TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('present', 'pending', 'failed', 'unknown')),
        inputs TEXT NOT NULL,
        output_size INTEGER,
        output_mtime_ns INTEGER,
        output_inode INTEGER,
        updated_at REAL NOT NULL,
        CHECK ((output_size IS NULL) = (output_mtime_ns IS NULL)
               AND (output_size IS NULL) = (output_inode IS NULL))
    )""",
    "CREATE INDEX images_by_key ON images (key)",
    """CREATE TABLE journal (
        id INTEGER PRIMARY KEY,
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
        sent_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        message TEXT,
        cost REAL NOT NULL DEFAULT 0,
        digest TEXT REFERENCES artifacts (digest) DEFERRABLE INITIALLY DEFERRED,
        extra_of INTEGER REFERENCES journal (id)
    )""",
    # An extra job carries its origin's replyRef and attempt, so uniqueness covers origins.
    "CREATE UNIQUE INDEX journal_reply_ref ON journal (reply_ref) WHERE extra_of IS NULL",
    "CREATE UNIQUE INDEX journal_attempt ON journal (key, attempt) WHERE extra_of IS NULL",
    # One paid job is one entry: adopting the same job twice would hide a second charge.
    "CREATE UNIQUE INDEX journal_job_id ON journal (job_id) WHERE job_id IS NOT NULL",
    "CREATE INDEX journal_by_key ON journal (key)",
    # Belt and braces for the rule that a record of a paid job is never lost (4.5, step 5).
    """CREATE TRIGGER journal_rows_are_never_deleted BEFORE DELETE ON journal
       BEGIN SELECT RAISE(ABORT, 'journal rows are never deleted'); END""",
    """CREATE TABLE uploads (
        digest TEXT NOT NULL,
        email TEXT NOT NULL,
        file_id TEXT NOT NULL,
        uploaded_at REAL NOT NULL,
        PRIMARY KEY (digest, email)
    )""",
    """CREATE TABLE spend (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL,
        key TEXT NOT NULL,
        image TEXT NOT NULL,
        model TEXT NOT NULL,
        amount REAL NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('generation', 'extra', 'refund')),
        recorded_at REAL NOT NULL,
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
        acquired_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        pid_start TEXT
    )""",
)


def _v1_create_everything(conn: sqlite3.Connection) -> None:
    """Version 0 is an empty file: create every table and fix the lineage."""
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    for statement in _V1_STATEMENTS:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO meta (id, lineage, serial) VALUES (1, ?, 0)",
        (str(uuid.uuid4()),),
    )


def _v2_protect_and_pins(conn: sqlite3.Connection) -> None:
    """Remember `protect` per image, so deleting a protected image from the specs is blocked
    even though its spec is gone; and pins, objects `gc` keeps although no image uses them."""
    conn.execute("ALTER TABLE images ADD COLUMN protect INTEGER NOT NULL DEFAULT 0")
    conn.execute(
        """CREATE TABLE pins (
            digest TEXT PRIMARY KEY,
            note TEXT NOT NULL DEFAULT '',
            pinned_at REAL NOT NULL
        )"""
    )


MIGRATIONS: Final[Sequence[Migration]] = (_v1_create_everything, _v2_protect_and_pins)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def verify_schema(conn: sqlite3.Connection, path: Path, supported: int) -> int:
    """Return the file's schema version, after checking that we may use it.

    Raises `StateError` for a SQLite file that is not an ltx-reconcile state, and
    `SchemaTooNewError` for one written by a newer ltx-reconcile.
    """
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    is_blank = application_id == 0 and version == 0 and not _has_tables(conn)
    if application_id != APPLICATION_ID and not is_blank:
        raise StateError(
            f"{path} is a SQLite file but not an ltx-reconcile state",
            hint="point --state at the state file (state/state.db by default), or move this file away",
        )
    if version > supported:
        raise SchemaTooNewError(
            f"{path} was written by a newer ltx-reconcile "
            f"(state schema {version}; this version understands up to {supported})",
            hint="upgrade ltx-reconcile to use this state; nothing was changed",
        )
    return version


def _has_tables(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None
