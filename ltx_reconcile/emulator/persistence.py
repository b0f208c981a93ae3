"""Optional SQLite persistence of an emulator's state across restarts (E46, `--state FILE`).

`StateStore` writes through: `EmulatorState` calls it, under its own lock, after every
change, so a killed emulator restarts with every account, job, asset and ledger entry it
had answered for. Records are stored as JSON next to their key (the emulator's own format,
read back only by this module); upload bytes are BLOBs. The URL signing key is kept too, so
URLs handed out before a restart stay valid until they expire. Nothing else touches the file.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ltx_reconcile.emulator.accounts import Account
from ltx_reconcile.emulator.assets import Asset, AssetKind
from ltx_reconcile.emulator.images import ImageSpec
from ltx_reconcile.emulator.jobs import Job
from ltx_reconcile.emulator.ledger import LedgerEntry, LedgerKind
from ltx_reconcile.emulator.validation import CreateParams

__all__ = ["Snapshot", "StateStore"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (email TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assets (uuid TEXT PRIMARY KEY, record TEXT NOT NULL, content BLOB);
CREATE TABLE IF NOT EXISTS ledger (seq INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a store holds, as loaded at start-up."""

    accounts: tuple[Account, ...]
    jobs: tuple[Job, ...]
    assets: tuple[Asset, ...]
    ledger: tuple[LedgerEntry, ...]


class StateStore:
    """One SQLite file holding an emulator's state; call `close()` when done."""

    def __init__(self, path: Path) -> None:
        # The state object serialises every call under its lock; the connection is shared
        # between the server thread and a test's thread, never used by two at once.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return "StateStore(...)"

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def signing_key(self) -> bytes:
        """The URL signing key, made and stored on first use."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'signing_key'").fetchone()
        if row is not None:
            return bytes(row[0])
        key = secrets.token_bytes(32)
        self._db.execute("INSERT INTO meta (key, value) VALUES ('signing_key', ?)", (key,))
        return key

    def has_data(self) -> bool:
        """Whether a previous run left accounts behind (else the configuration seeds them)."""
        return self._db.execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone() is not None

    def clear(self) -> None:
        """Drop every record (the signing key stays)."""
        with self._db:
            for table in ("accounts", "jobs", "assets", "ledger"):
                self._db.execute(f"DELETE FROM {table}")  # noqa: S608  # fixed table names
            self._db.execute("DELETE FROM meta WHERE key = 'seeded'")

    def load(self) -> Snapshot:
        """Read every record back."""
        accounts = [_account(json.loads(r)) for (r,) in self._records("accounts")]
        jobs = [_job(json.loads(r)) for (r,) in self._records("jobs")]
        assets = [
            _asset(json.loads(record), content)
            for record, content in self._db.execute("SELECT record, content FROM assets")
        ]
        ledger = [_ledger(json.loads(r)) for (r,) in self._records("ledger")]
        return Snapshot(tuple(accounts), tuple(jobs), tuple(assets), tuple(ledger))

    def _records(self, table: str) -> list[tuple[str]]:
        query = f"SELECT record FROM {table} ORDER BY rowid"  # noqa: S608  # fixed table names
        return list(self._db.execute(query))

    def save_account(self, account: Account) -> None:
        """Insert or replace an account."""
        self._upsert("accounts", "email", account.email, dataclasses.asdict(account))

    def delete_account(self, email: str) -> None:
        """Remove an account."""
        self._db.execute("DELETE FROM accounts WHERE email = ?", (email,))

    def save_job(self, job: Job) -> None:
        """Insert or replace a job."""
        self._upsert("jobs", "job_id", job.job_id, dataclasses.asdict(job))

    def delete_job(self, job_id: str) -> None:
        """Remove a job record whose retention ended."""
        self._db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def save_asset(self, asset: Asset) -> None:
        """Insert an asset; its bytes never change."""
        record = dataclasses.asdict(dataclasses.replace(asset, content=None))
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO assets (uuid, record, content) VALUES (?, ?, ?)",
                (asset.uuid, json.dumps(record), asset.content),
            )
            self._mark_seeded()

    def add_ledger(self, entry: LedgerEntry) -> None:
        """Append a ledger entry."""
        self._db.execute(
            "INSERT INTO ledger (record) VALUES (?)", (json.dumps(dataclasses.asdict(entry)),)
        )

    def _upsert(self, table: str, key_column: str, key: str, record: dict[str, Any]) -> None:
        with self._db:
            self._db.execute(
                f"INSERT INTO {table} ({key_column}, record) VALUES (?, ?) "  # noqa: S608
                f"ON CONFLICT({key_column}) DO UPDATE SET record = excluded.record",
                (key, json.dumps(record)),
            )
            self._mark_seeded()

    def _mark_seeded(self) -> None:
        self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('seeded', x'01')")


def _account(record: dict[str, Any]) -> Account:
    return Account(**record)


def _job(record: dict[str, Any]) -> Job:
    params = CreateParams(**record.pop("params"))
    return Job(params=params, **record)


def _asset(record: dict[str, Any], content: bytes | None) -> Asset:
    image = record.pop("image")
    spec = None
    if image is not None:
        inputs = tuple((str(k), str(v)) for k, v in image.pop("inputs"))
        spec = ImageSpec(inputs=inputs, **image)
    kind = AssetKind(record.pop("kind"))
    record.pop("content", None)
    return Asset(kind=kind, image=spec, content=content, **record)


def _ledger(record: dict[str, Any]) -> LedgerEntry:
    kind = LedgerKind(record.pop("kind"))
    return LedgerEntry(kind=kind, **record)
