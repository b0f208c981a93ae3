"""Write-ahead journal of paid submissions: the record that stops us paying twice.

An intent row is committed, durably, before every POST that can cost money, and the job id
is committed the moment the API returns it (contract section 4.5; ADR 0002). Nothing else
writes the `journal` table, and no row is ever deleted, not even that of an unwanted job:
a paid job is money, and its record is how a later run finds it again.

Each entry moves through a small state machine; any other move raises `StateError`:

    submitting -> submitted | unknown | failed
    submitted  -> completed | fetched | failed
    completed  -> fetched | failed
    unknown    -> submitted (adopted by recovery) | abandoned

`fetched`, `failed` and `abandoned` are final. A key may have at most one open entry
(submitting, submitted, completed or unknown) at a time: a second intent while one is open
would be a second payment for an image already on its way.

The journal writes through any `BaseStateStore` (SQLite or PostgreSQL) in the SQL both
speak, so this state machine exists once for every backend.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

from ltx_reconcile.errors import StateError
from ltx_reconcile.state.codec import JOURNAL_COLUMNS, journal_entry_from_row
from ltx_reconcile.state.records import (
    OPEN_JOURNAL_STATES,
    JournalEntry,
    JournalState,
    SpendKind,
    dump_json,
)
from ltx_reconcile.state.store import BaseStateStore

__all__ = ["TRANSITIONS", "Journal", "JournalMark"]

TRANSITIONS: Final[Mapping[JournalState, frozenset[JournalState]]] = {
    "submitting": frozenset({"submitted", "unknown", "failed"}),
    "submitted": frozenset({"completed", "fetched", "failed"}),
    "completed": frozenset({"fetched", "failed"}),
    "unknown": frozenset({"submitted", "abandoned"}),
    "fetched": frozenset(),
    "failed": frozenset(),
    "abandoned": frozenset(),
}
"""Every legal move of a journal entry; see the module docstring."""

_SELECT: Final = f"SELECT {JOURNAL_COLUMNS} FROM journal"  # noqa: S608 (constant columns)
_OPEN_STATES_SQL: Final = ", ".join(f"'{state}'" for state in sorted(OPEN_JOURNAL_STATES))


class JournalMark(NamedTuple):
    """What the journal held at one instant (`Journal.mark`): its last entry id and which
    entries were open. An entry newer than that, or open then, has an outcome decided
    since; on a shared state that is another apply's work of this round."""

    last_id: int
    open_ids: frozenset[int]

    def decided_since(self, entry: JournalEntry) -> bool:
        """Whether `entry` was made, or still open, when the mark was taken."""
        return entry.id > self.last_id or entry.id in self.open_ids


class Journal:
    """The journal table of one state store; every method commits or joins a transaction."""

    def __init__(self, store: BaseStateStore) -> None:
        """Journal entries are written through `store` and stamped by its clock."""
        self._store = store

    def record_intent(
        self,
        key: str,
        image: str,
        email: str,
        request: Mapping[str, object],
        request_digest: str,
        attempt: int | None = None,
    ) -> JournalEntry:
        """Commit a `submitting` entry, with a fresh replyRef, before the create is sent.

        The row is on disk (fsynced) when this returns, so it must not run inside an open
        transaction. `attempt` defaults to one more than the key's last attempt. Raises
        `StateError` inside a transaction, or when the key already has an open entry.
        """
        self._require_own_commit("record_intent")
        with self._store.transaction():
            self._refuse_second_open_entry(key)
            if attempt is None:
                attempt = self._next_attempt(key)
            now = self._store.clock()
            ((entry_id,),) = self._store._execute(
                "INSERT INTO journal (key, image, attempt, email, reply_ref, request_digest, "
                "request, state, sent_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'submitting', ?, ?) RETURNING id",
                (
                    key,
                    image,
                    attempt,
                    email,
                    f"ltxr:{uuid.uuid4()}",
                    request_digest,
                    dump_json(request),
                    now,
                    now,
                ),
            ).fetchall()
            self._store._mark_changed()
            return self.entry(entry_id)

    def mark_submitted(self, entry_id: int, job_id: str, *, cost: float) -> JournalEntry:
        """Record the job id the API returned, and its charge, in one commit of its own.

        The spend line goes with the job id, so no crash can leave a paid job unrecorded in
        the spend ledger. Also adopts an `unknown` entry whose job recovery found. Raises
        `StateError` for an illegal move, inside a transaction, or when the job is already
        another entry's.
        """
        self._require_own_commit("mark_submitted")
        with self._store.transaction():
            return self._submitted(entry_id, job_id, cost)

    def adopt(self, entry_id: int, job_ids: Sequence[str], *, cost: float) -> JournalEntry:
        """Recovery found the jobs made under an entry's replyRef: record them all at once.

        The first becomes the entry's job; every further one is a second paid job, kept as
        an entry of its own (never dropped: it is money) with an `extra` spend line. One
        commit, so a crash cannot keep the first and lose the others. Raises `StateError`
        like `mark_submitted`.
        """
        self._require_own_commit("adopt")
        first, *extras = job_ids
        with self._store.transaction():
            entry = self._submitted(entry_id, first, cost)
            for job_id in extras:
                extra = self._record_extra_job(entry_id, job_id)
                self._record_charge(extra, job_id, cost, "extra")
            return entry

    def _submitted(self, entry_id: int, job_id: str, cost: float) -> JournalEntry:
        self._refuse_known_job(job_id)
        entry = self._move(entry_id, "submitted", job_id=job_id)
        self._record_charge(entry, job_id, cost, "generation")
        return entry

    def _record_charge(
        self, entry: JournalEntry, job_id: str, cost: float, kind: SpendKind
    ) -> None:
        model = str(entry.request.get("model", "flux"))
        self._store.record_spend(job_id, entry.key, entry.image, model, cost, kind)

    def mark_completed(self, entry_id: int) -> JournalEntry:
        """The API reports the job done, with a download URL not yet fetched."""
        return self._move(entry_id, "completed")

    def mark_fetched(self, entry_id: int, digest: str, cost: float) -> JournalEntry:
        """The artifact is stored under `digest`; record it in the same transaction."""
        return self._move(entry_id, "fetched", digest=digest, cost=float(cost))

    def mark_failed(self, entry_id: int, message: str, cost: float = 0) -> JournalEntry:
        """The API refused or failed the job; `message` is its own words."""
        return self._move(entry_id, "failed", message=message, cost=float(cost))

    def mark_unknown(self, entry_id: int, message: str) -> JournalEntry:
        """Recovery could not tell whether the create was accepted: maybe paid for."""
        return self._move(entry_id, "unknown", message=message)

    def mark_abandoned(self, entry_id: int, message: str) -> JournalEntry:
        """The user chose to resubmit an unknown entry; it stays on record, closed."""
        return self._move(entry_id, "abandoned", message=message)

    def _record_extra_job(self, of_entry_id: int, job_id: str) -> JournalEntry:
        """Keep a second paid job found under an entry's replyRef, as its own entry.

        The new entry shares the original's key, attempt and replyRef, starts `submitted`
        and can be fetched like any other. Raises `StateError` if the job is known already.
        """
        with self._store.transaction():
            origin = self.entry(of_entry_id)
            self._refuse_known_job(job_id)
            root = origin.extra_of if origin.extra_of is not None else origin.id
            ((entry_id,),) = self._store._execute(
                "INSERT INTO journal (key, image, attempt, email, reply_ref, request_digest, "
                "request, state, job_id, sent_at, updated_at, extra_of) "
                "SELECT key, image, attempt, email, reply_ref, request_digest, request, "
                "'submitted', ?, sent_at, ?, ? FROM journal WHERE id = ? RETURNING id",
                (job_id, self._store.clock(), root, root),
            ).fetchall()
            self._store._mark_changed()
            return self.entry(entry_id)

    def entry(self, entry_id: int) -> JournalEntry:
        """One entry by id. Raises `StateError` if there is none."""
        row = self._store._execute(f"{_SELECT} WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise StateError(f"journal entry {entry_id} is not in {self._store.location}")
        return journal_entry_from_row(row)

    def open_entries(self) -> list[JournalEntry]:
        """Entries that are submitting, submitted, completed or unknown, oldest first."""
        sql = f"{_SELECT} WHERE state IN ({_OPEN_STATES_SQL}) ORDER BY id"
        return [journal_entry_from_row(row) for row in self._store._execute(sql)]

    def known_job_ids(self) -> frozenset[str]:
        """Every job id the journal holds, so recovery never adopts one job twice."""
        rows = self._store._execute("SELECT job_id FROM journal WHERE job_id IS NOT NULL")
        return frozenset(row[0] for row in rows)

    def mark(self) -> JournalMark:
        """Where the journal stands now, to tell later what happened since."""
        # Open ids first: an entry opened between the two reads is newer than last_id, and
        # one closed between them is still among the open ids: either way it counts as new.
        sql = f"SELECT id FROM journal WHERE state IN ({_OPEN_STATES_SQL})"  # noqa: S608 (constant)
        rows = self._store._execute(sql)
        open_ids = frozenset(int(row[0]) for row in rows)
        row = self._store._execute("SELECT MAX(id) FROM journal").fetchone()
        return JournalMark(0 if row[0] is None else int(row[0]), open_ids)

    def fetched_since(self, mark: JournalMark) -> dict[str, str]:
        """Key -> digest of every entry fetched since `mark` was taken."""
        # Every entry decided since the mark has an id above the lowest open one then.
        floor = min(mark.open_ids, default=mark.last_id + 1) - 1
        rows = self._store._execute(
            "SELECT id, key, digest FROM journal "
            "WHERE state = 'fetched' AND digest IS NOT NULL AND id > ?",
            (min(floor, mark.last_id),),
        )
        return {
            key: digest
            for entry_id, key, digest in rows
            if entry_id > mark.last_id or entry_id in mark.open_ids
        }

    def entries_for(self, key: str) -> list[JournalEntry]:
        """Every entry ever written for `key`, oldest first."""
        sql = f"{_SELECT} WHERE key = ? ORDER BY id"
        return [journal_entry_from_row(row) for row in self._store._execute(sql, (key,))]

    def _move(self, entry_id: int, to: JournalState, **columns: object) -> JournalEntry:
        with self._store.transaction():
            entry = self.entry(entry_id)
            if to not in TRANSITIONS[entry.state]:
                raise StateError(
                    f"journal entry {entry_id} ({entry.image}, attempt {entry.attempt}) "
                    f"cannot go from {entry.state} to {to}",
                    hint="this is a bug in ltx-reconcile; the journal was left unchanged",
                )
            values = {"state": to, "updated_at": self._store.clock(), **columns}
            assignments = ", ".join(f"{column} = ?" for column in values)
            self._store._write(
                f"UPDATE journal SET {assignments} WHERE id = ?",  # noqa: S608 (our column names)
                (*values.values(), entry_id),
            )
            return self.entry(entry_id)

    def _require_own_commit(self, operation: str) -> None:
        if self._store.in_transaction:
            raise StateError(
                f"{operation} must commit on its own, but a transaction is open on "
                f"{self._store.location}",
                hint="this is a bug in ltx-reconcile: a paid request would not be journaled in time",
            )

    def _refuse_second_open_entry(self, key: str) -> None:
        sql = f"{_SELECT} WHERE key = ? AND state IN ({_OPEN_STATES_SQL}) ORDER BY id LIMIT 1"
        row = self._store._execute(sql, (key,)).fetchone()
        if row is not None:
            entry = journal_entry_from_row(row)
            raise StateError(
                f"key {key} already has an open journal entry {entry.id} "
                f"({entry.image}, attempt {entry.attempt}, {entry.state}); "
                "sending another create would pay twice",
                hint="settle the open entry first (an unknown one is abandoned with --resubmit-unknown)",
            )

    def _refuse_known_job(self, job_id: str) -> None:
        row = self._store._execute("SELECT id FROM journal WHERE job_id = ?", (job_id,)).fetchone()
        if row is not None:
            raise StateError(
                f"job {job_id} is already journal entry {row[0]} in {self._store.location}"
            )

    def _next_attempt(self, key: str) -> int:
        row = self._store._execute(
            "SELECT MAX(attempt) FROM journal WHERE key = ?", (key,)
        ).fetchone()
        return 1 if row[0] is None else int(row[0]) + 1
