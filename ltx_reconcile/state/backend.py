"""The capabilities of a state backend, as small protocols (after OpenTofu's statemgr).

The planner needs only a `StateReader`; the executor a `StateBackend` and a
`JournalWriter`. `StateStore` (SQLite) and `PostgresStateStore` both satisfy them, and
`Journal` writes through either, so the planner and executor need not know which it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from ltx_reconcile.state.records import (
    ArtifactRecord,
    ImageRecord,
    JournalEntry,
    SpendKind,
    StateSnapshot,
    Upload,
)

__all__ = ["JournalWriter", "StateBackend", "StateReader", "StateWriter"]


class StateReader(Protocol):
    """Reads the state as one consistent snapshot, and the spend ledger."""

    @property
    def location(self) -> str:
        """Where the state lives, for messages (a file path, or a database without password)."""
        ...

    @property
    def lineage(self) -> str:
        """The id fixed when the state was created."""
        ...

    @property
    def serial(self) -> int:
        """The number of committed transactions that changed the state."""
        ...

    def snapshot(self) -> StateSnapshot:
        """The whole state at one serial."""
        ...

    def spend_since(self, since: float) -> float:
        """Credits spent from `since` (epoch seconds) on."""
        ...

    def total_spend(self) -> float:
        """Credits spent since the state was created."""
        ...


class StateWriter(Protocol):
    """Changes the state; each change commits alone or joins an open `transaction()`."""

    def transaction(self) -> AbstractContextManager[None]:
        """All writes inside commit together, bumping the serial once, or none does."""
        ...

    def put_image(self, record: ImageRecord) -> None:
        """Record an image under its name."""
        ...

    def remove_image(self, name: str) -> bool:
        """Stop tracking an image."""
        ...

    def rename_image(self, old: str, new: str) -> None:
        """Move an image's record to a new name."""
        ...

    def put_artifact(self, record: ArtifactRecord) -> bool:
        """Record a stored object, never overwriting a known digest."""
        ...

    def put_upload(self, upload: Upload) -> None:
        """Remember an uploaded reference image's fileId."""
        ...

    def record_spend(
        self, job_id: str, key: str, image: str, model: str, amount: float, kind: SpendKind
    ) -> bool:
        """Add a line to the spend ledger, once per job and kind."""
        ...


class StateBackend(StateReader, StateWriter, Protocol):
    """Everything `apply` needs from the state besides the journal and the lease."""


class JournalWriter(Protocol):
    """The write-ahead journal of paid submissions (see journal.py for the rules)."""

    def record_intent(
        self,
        key: str,
        image: str,
        email: str,
        request: Mapping[str, object],
        request_digest: str,
        attempt: int | None = None,
    ) -> JournalEntry:
        """Durably record a create that is about to be sent."""
        ...

    def mark_submitted(self, entry_id: int, job_id: str, *, cost: float) -> JournalEntry:
        """The job id the API returned, and its charge, committed at once."""
        ...

    def adopt(self, entry_id: int, job_ids: Sequence[str], *, cost: float) -> JournalEntry:
        """Jobs recovery found under an entry's replyRef, all committed at once."""
        ...

    def mark_completed(self, entry_id: int) -> JournalEntry:
        """The job finished; its artifact is not fetched yet."""
        ...

    def mark_fetched(self, entry_id: int, digest: str, cost: float) -> JournalEntry:
        """The artifact is stored."""
        ...

    def mark_failed(self, entry_id: int, message: str, cost: float = 0) -> JournalEntry:
        """The job failed or was refused."""
        ...

    def mark_unknown(self, entry_id: int, message: str) -> JournalEntry:
        """Nobody can tell whether the create was accepted."""
        ...

    def mark_abandoned(self, entry_id: int, message: str) -> JournalEntry:
        """An unknown entry the user chose to resubmit."""
        ...

    def open_entries(self) -> list[JournalEntry]:
        """Entries that may still cost money or still owe an image."""
        ...

    def entries_for(self, key: str) -> list[JournalEntry]:
        """Every entry of a key."""
        ...

    def entry(self, entry_id: int) -> JournalEntry:
        """One entry by id."""
        ...

    def known_job_ids(self) -> frozenset[str]:
        """Every job id the journal holds."""
        ...
