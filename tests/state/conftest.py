"""Fixtures for the state tests: a real state on each backend, and record factories.

`store` is a fresh state on SQLite (a real file in tmp_path) and on PostgreSQL (a schema of
its own on a throwaway server over loopback, see testing/postgres.py), so one test pins
the same behaviour on both. `backend` opens further stores on the same state, reads it from
a second connection, and runs raw SQL beside the store. Tests about the SQLite file itself
take `state_path` alone and stay SQLite-only.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ltx_reconcile.state.records import StateSnapshot
from ltx_reconcile.state.schema import MIGRATIONS as SQLITE_MIGRATIONS
from ltx_reconcile.state.store import BaseStateStore, StateStore
from testing.postgres import PostgresServer


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    """Where the state file goes; the directory does not exist yet."""
    return tmp_path / "state" / "state.db"


class SqliteBackend:
    """States as files in one directory; the main one is `state_path`."""

    name = "sqlite"
    migrations: Sequence[Any] = SQLITE_MIGRATIONS
    errors: type[Exception] = sqlite3.Error

    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self, *, name: str = "state", **options: Any) -> BaseStateStore:
        path = self.path if name == "state" else self.path.parent / f"{name}.db"
        return StateStore.open(path, **options)

    def read_snapshot(self) -> StateSnapshot:
        return StateStore.read_snapshot(self.path)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one statement on a connection of its own, committed; its rows, if any."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            return [tuple(row) for row in conn.execute(sql)]
        finally:
            conn.close()

    def exists(self) -> bool:
        return self.path.is_file()


class PostgresBackend:
    """States as schemas on one server; the main one is named for the test."""

    name = "postgresql"

    def __init__(self, server: PostgresServer) -> None:
        import psycopg

        from ltx_reconcile.state.postgres import MIGRATIONS

        self.server = server
        self.schema = f"test_{uuid.uuid4().hex[:12]}"
        self.migrations: Sequence[Any] = MIGRATIONS
        self.errors: type[Exception] = psycopg.Error

    def open(self, *, name: str = "state", **options: Any) -> BaseStateStore:
        from ltx_reconcile.state.postgres import PostgresStateStore

        schema = self.schema if name == "state" else f"{self.schema}_{name}"
        return PostgresStateStore.open(self.server.url, schema=schema, **options)

    def read_snapshot(self) -> StateSnapshot:
        with self.open() as other:
            return other.snapshot()

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        """Run statements on a connection of their own, committed; the last one's rows."""
        with psycopg.connect(self.server.url, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {self.schema}".encode())
            cursor = conn.execute(sql.encode())
            while cursor.nextset():
                pass
            return [] if cursor.description is None else [tuple(row) for row in cursor]

    def exists(self) -> bool:
        sql = f"SELECT 1 FROM pg_namespace WHERE nspname = '{self.schema}'"  # noqa: S608 (ours)
        rows = self.query(sql)
        return rows == [(1,)]


Backend = SqliteBackend | PostgresBackend


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, state_path: Path) -> Backend:
    """Each backend in turn, with a fresh, not yet created, main state."""
    if request.param == "sqlite":
        return SqliteBackend(state_path)
    return PostgresBackend(request.getfixturevalue("postgres_server"))


@pytest.fixture
def store(backend: Backend) -> Iterator[BaseStateStore]:
    """A freshly created state on each backend, closed after the test."""
    opened = backend.open()
    yield opened
    opened.close()
