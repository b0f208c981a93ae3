"""The state: what ltx-reconcile has generated, paid for and is still waiting on.

Contract (the rules every backend keeps; ADR 0002 gives the reasons):

- The state is one SQLite file (`state/state.db`). It has a `lineage`, fixed when the file
  is created, and a `serial`: every committed transaction that changes the state adds one,
  exactly once however many rows it wrote; a rolled-back transaction changes nothing.
  Lease writes are coordination, not state, and never change the serial.
- Reading (`read_snapshot`) never writes, never creates the file, takes no lease and does
  not import sqlite-utils: `plan` must stay fast. A snapshot is consistent: one serial.
- Writing happens under the lease (lease.py), in `StateStore.transaction()` blocks that
  roll back on any exception.
- The journal (journal.py) is written before money is spent: an intent row is committed
  and fsynced before each paid create, the job id is committed as soon as it is known, and
  no journal row is ever deleted.
- Schemas only move forward; a state written by a newer ltx-reconcile is refused.
- After `StateStore.close()` the file alone is the state: no `-wal`/`-shm` beside it.

The planner depends only on `StateReader` (backend.py); the executor on `StateBackend`,
`JournalWriter` and the lease functions. Modules of this package call the store's
underscore methods (`_execute`, `_write`, `_mark_changed`); nothing outside it may.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ltx_reconcile.state.backend import JournalWriter, StateBackend, StateReader, StateWriter
    from ltx_reconcile.state.journal import TRANSITIONS, Journal
    from ltx_reconcile.state.lease import (
        ProcessIdentity,
        acquire,
        current_lease,
        force_unlock,
        heartbeat,
        release,
    )
    from ltx_reconcile.state.records import (
        ArtifactRecord,
        ImageRecord,
        JournalEntry,
        JsonObject,
        Lease,
        OutputStat,
        StateSnapshot,
        Upload,
    )
    from ltx_reconcile.state.schema import SCHEMA_VERSION
    from ltx_reconcile.state.snapshot import read_snapshot
    from ltx_reconcile.state.store import StateStore

# Loaded on first use (PEP 562): `plan` imports state.records and state.snapshot, and must
# not pay for the store, the journal and the lease, which only writers need.
_HOMES: Final = {
    **dict.fromkeys(("JournalWriter", "StateBackend", "StateReader", "StateWriter"), "backend"),
    **dict.fromkeys(("TRANSITIONS", "Journal"), "journal"),
    **dict.fromkeys(
        ("ProcessIdentity", "acquire", "current_lease", "force_unlock", "heartbeat", "release"),
        "lease",
    ),
    **dict.fromkeys(
        (
            "ArtifactRecord",
            "ImageRecord",
            "JournalEntry",
            "JsonObject",
            "Lease",
            "OutputStat",
            "StateSnapshot",
            "Upload",
        ),
        "records",
    ),
    "SCHEMA_VERSION": "schema",
    "read_snapshot": "snapshot",
    "StateStore": "store",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "SCHEMA_VERSION",
    "TRANSITIONS",
    "ArtifactRecord",
    "ImageRecord",
    "Journal",
    "JournalEntry",
    "JournalWriter",
    "JsonObject",
    "Lease",
    "OutputStat",
    "ProcessIdentity",
    "StateBackend",
    "StateReader",
    "StateSnapshot",
    "StateStore",
    "StateWriter",
    "Upload",
    "acquire",
    "current_lease",
    "force_unlock",
    "heartbeat",
    "read_snapshot",
    "release",
]
