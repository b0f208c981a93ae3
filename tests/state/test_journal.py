"""The write-ahead journal: its state machine, and the spend lines it commits with job ids.

Every test runs on SQLite and on PostgreSQL (tests/state/conftest.py): one state machine,
written once, over both stores.
"""

from __future__ import annotations

import pytest

from ltx_reconcile.errors import StateError
from ltx_reconcile.state.journal import Journal

KEY = "k1:" + "ab" * 32


def _intent(journal: Journal, key: str = KEY, image: str = "hero"):
    request = {"prompt": "a knight", "model": "nano-banana"}
    return journal.record_intent(
        key=key, image=image, email="a@example.com", request=request, request_digest="d" * 64
    )


def _spend(backend) -> list[tuple[str, str, float, str]]:
    """The spend ledger as another connection sees it: committed lines only."""
    return backend.query("SELECT job_id, model, amount, kind FROM spend ORDER BY job_id")


def test_an_intent_gets_a_fresh_reply_ref_and_the_next_attempt_number(store):
    """Each intent is `submitting` with its own `ltxr:` replyRef; attempts count per key."""
    journal = Journal(store)
    first = _intent(journal)
    journal.mark_failed(first.id, "not accepted (429)")
    second = _intent(journal)
    assert (first.state, first.attempt, second.attempt) == ("submitting", 1, 2)
    assert first.reply_ref.startswith("ltxr:")
    assert first.reply_ref != second.reply_ref


def test_a_job_id_is_committed_together_with_its_charge(store, backend):
    """mark_submitted writes the job id and a `generation` spend line in one commit."""
    journal = Journal(store)
    entry = journal.mark_submitted(_intent(journal).id, "job-1", cost=49)
    assert (entry.state, entry.job_id) == ("submitted", "job-1")
    assert _spend(backend) == [("job-1", "nano-banana", 49.0, "generation")]
    assert journal.known_job_ids() == {"job-1"}


def test_adopting_several_jobs_keeps_every_extra_paid_job_with_its_spend(store, backend):
    """Two jobs under one replyRef: the first is the entry's, the second an extra entry."""
    journal = Journal(store)
    entry = _intent(journal)
    journal.adopt(entry.id, ["job-1", "job-2"], cost=49)
    entries = journal.entries_for(KEY)
    assert [(e.state, e.job_id, e.extra_of, e.reply_ref) for e in entries] == [
        ("submitted", "job-1", None, entry.reply_ref),
        ("submitted", "job-2", entry.id, entry.reply_ref),
    ]
    assert _spend(backend) == [
        ("job-1", "nano-banana", 49.0, "generation"),
        ("job-2", "nano-banana", 49.0, "extra"),
    ]


def test_an_adoption_that_fails_half_way_records_nothing(store, backend):
    """A job already known aborts the whole adoption: no job id, no spend line."""
    journal = Journal(store)
    journal.mark_submitted(_intent(journal, key="k1:other", image="other").id, "job-2", cost=28)
    entry = _intent(journal)
    with pytest.raises(StateError, match="job job-2 is already journal entry"):
        journal.adopt(entry.id, ["job-1", "job-2"], cost=49)
    assert journal.entry(entry.id).state == "submitting"
    assert [row[0] for row in _spend(backend)] == ["job-2"]


def test_a_second_open_entry_for_one_key_is_refused(store):
    """While a key's create may be paid for, another intent for it would pay twice."""
    journal = Journal(store)
    _intent(journal)
    with pytest.raises(StateError, match="already has an open journal entry"):
        _intent(journal)


def test_an_illegal_move_is_refused_and_changes_nothing(store, backend):
    """A failed entry is final; a move back is a bug, reported, and the row stays."""
    journal = Journal(store)
    entry = journal.mark_submitted(_intent(journal).id, "job-1", cost=49)
    journal.mark_failed(entry.id, "Generation failed: upstream timeout")
    with pytest.raises(StateError, match="cannot go from failed to submitted"):
        journal.mark_submitted(entry.id, "job-9", cost=49)
    assert journal.entry(entry.id).state == "failed"
    assert [row[0] for row in _spend(backend)] == ["job-1"]


def test_an_intent_inside_an_open_transaction_is_refused(store):
    """The intent must be durable before the POST leaves, so it commits on its own."""
    journal = Journal(store)
    with store.transaction(), pytest.raises(StateError, match="must commit on its own"):
        _intent(journal)


def test_an_unknown_entry_is_abandoned_before_a_new_attempt(store):
    """--resubmit-unknown closes the unknown entry, then a new attempt may start."""
    journal = Journal(store)
    entry = _intent(journal)
    journal.mark_unknown(entry.id, "no job found for its replyRef")
    journal.mark_abandoned(entry.id, "sent again under --resubmit-unknown")
    assert _intent(journal).attempt == 2


def test_journal_rows_are_never_deleted_even_by_hand(store, backend):
    """The database itself refuses to delete a journal row: a paid job's record is money."""
    journal = Journal(store)
    entry = journal.mark_submitted(_intent(journal).id, "job-1", cost=49)
    with pytest.raises(backend.errors, match="journal rows are never deleted"):
        backend.query("DELETE FROM journal")
    assert journal.entry(entry.id) == entry


def test_an_unknown_entry_id_is_reported_with_the_state(store):
    """Looking up an entry that does not exist names the entry and the state."""
    with pytest.raises(StateError) as caught:
        Journal(store).entry(404)
    assert str(caught.value) == f"journal entry 404 is not in {store.location}"
