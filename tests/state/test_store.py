"""The state stores: creation, serial, transactions, records, spend ledger, and a clean close.

Tests taking `store` or `backend` run on SQLite and on PostgreSQL (tests/state/conftest.py);
those taking only `state_path` are about the SQLite file itself and stay SQLite-only.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ltx_reconcile.errors import IntegrityError, StateError
from ltx_reconcile.state.backend import StateBackend, StateReader
from ltx_reconcile.state.records import OutputStat, Upload
from ltx_reconcile.state.schema import SCHEMA_VERSION
from ltx_reconcile.state.store import BaseStateStore, StateStore
from tests.state.factories import make_artifact, make_image, present_image


def sidecars(path: Path) -> list[str]:
    """The -wal, -shm and -journal files beside a state file."""
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_opening_a_missing_state_creates_it_with_a_lineage_and_serial_zero(backend):
    """The file (or schema) appears; the lineage is a uuid and the serial starts at 0."""
    assert not backend.exists()
    with backend.open() as store:
        assert backend.exists()
        assert len(store.lineage) == 36
        assert store.serial == 0


def test_reopening_a_state_keeps_its_lineage(backend):
    """The lineage is fixed at creation, not at each open."""
    with backend.open() as store:
        lineage = store.lineage
    with backend.open() as store:
        assert store.lineage == lineage


def test_two_new_states_have_different_lineages(backend):
    """A lineage tells one state apart from another, so a plan cannot cross between them."""
    with backend.open(name="a") as a, backend.open(name="b") as b:
        assert a.lineage != b.lineage


def test_each_write_outside_a_transaction_bumps_the_serial_by_one(store):
    """A lone write is its own transaction."""
    store.put_artifact(make_artifact())
    store.put_image(make_image())
    store.put_upload(Upload("ab" * 32, "a@example.com", "asset:1-type:image/png", 1.0))
    assert store.serial == 3


def test_a_transaction_of_many_writes_bumps_the_serial_once(store):
    """Nested blocks are savepoints; only the outermost commit counts, once."""
    with store.transaction():
        store.put_artifact(make_artifact())
        with store.transaction():
            store.put_image(present_image("hero", "ab" * 32))
            store.put_image(make_image("villain"))
        store.rename_image("villain", "rogue")
    assert store.serial == 1
    assert set(store.snapshot().images) == {"hero", "rogue"}


def test_a_transaction_that_changes_nothing_leaves_the_serial(store):
    """Only changes count: removing an image that is not there is not a change."""
    with store.transaction():
        assert store.remove_image("nobody") is False
    assert store.put_artifact(make_artifact()) is True
    assert store.put_artifact(make_artifact()) is False
    assert store.serial == 1


def test_an_exception_rolls_back_every_write_and_leaves_the_serial(store, backend):
    """Nothing of a failed transaction reaches the state, the serial included."""
    store.put_image(make_image("kept"))

    def write_then_fail() -> None:
        with store.transaction():
            store.put_image(make_image("lost"))
            store.remove_image("kept")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail()
    snapshot = backend.read_snapshot()
    assert (snapshot.serial, set(snapshot.images)) == (1, {"kept"})


def test_a_failed_nested_block_rolls_back_only_itself(store):
    """A savepoint that fails and is handled leaves the outer block's writes in place."""
    with store.transaction():
        store.put_image(make_image("outer"))
        with pytest.raises(RuntimeError):
            _put_in_a_failing_transaction(store, "inner")
    assert set(store.snapshot().images) == {"outer"}
    assert store.serial == 1


def test_a_rolled_back_nested_block_alone_does_not_count_as_a_change(store):
    """If the only write was undone by its savepoint, the serial stays."""
    with store.transaction(), pytest.raises(RuntimeError):
        _put_in_a_failing_transaction(store, "inner")
    assert store.serial == 0


def _put_in_a_failing_transaction(store: BaseStateStore, name: str) -> None:
    with store.transaction():
        store.put_image(make_image(name))
        raise RuntimeError(name)


def test_an_image_naming_an_unrecorded_artifact_is_refused_at_commit(store):
    """The artifact reference is checked when the transaction commits, in any write order."""
    # SQLite says "FOREIGN KEY constraint failed", PostgreSQL "violates foreign key constraint".
    with pytest.raises(StateError, match=r"(?i)foreign key constraint"):
        store.put_image(present_image("hero", "cd" * 32))
    with store.transaction():
        store.put_image(present_image("hero", "cd" * 32))
        store.put_artifact(make_artifact("cd" * 32))
    assert store.snapshot().images["hero"].digest == "cd" * 32
    assert store.serial == 1


def test_an_unknown_image_status_is_refused(store):
    """The schema's CHECK constraints are the one place statuses are listed."""
    with pytest.raises(StateError, match=r"(?i)check constraint"):
        store.put_image(make_image(status="done"))


def test_put_artifact_never_overwrites_the_provenance_of_a_known_digest(store):
    """The first record of an object is the one kept; a second put returns False."""
    first = make_artifact(job_id="job-1", source="generated")
    assert store.put_artifact(first) is True
    assert store.put_artifact(make_artifact(job_id="job-2", source="refetched")) is False
    assert store.snapshot().artifacts[first.digest] == first


def test_a_known_digest_offered_with_another_size_is_an_integrity_error(store):
    """Same digest, different size: the bytes or the record is corrupt, and the user is told."""
    store.put_artifact(make_artifact(size=1234))
    with pytest.raises(IntegrityError) as caught:
        store.put_artifact(make_artifact(size=99))
    assert str(caught.value) == (
        f"artifact {'ab' * 32} is recorded in {store.location} with 1234 bytes, "
        "but 99 bytes were offered"
    )


def test_the_newest_artifact_of_a_key_is_the_one_shown_for_it(store):
    """A second artifact for a key is allowed; the newer one wins, ties go to the later."""
    store.put_artifact(make_artifact("01" * 32, created_at=20.0))
    store.put_artifact(make_artifact("02" * 32, created_at=10.0))
    store.put_artifact(make_artifact("03" * 32, created_at=20.0))
    snapshot = store.snapshot()
    assert snapshot.artifacts_by_key["k1:hero"].digest == "03" * 32
    assert set(snapshot.artifacts) == {"01" * 32, "02" * 32, "03" * 32}


def test_renaming_an_image_keeps_everything_but_its_name(store):
    """A move costs nothing: key, digest, inputs and output fingerprint stay."""
    store.put_artifact(make_artifact())
    store.put_image(present_image("old", "ab" * 32))
    store.rename_image("old", "new")
    images = store.snapshot().images
    assert set(images) == {"new"}
    assert images["new"] == present_image("old", "ab" * 32)._replace(name="new")


def test_renaming_onto_a_tracked_name_or_from_an_untracked_one_is_refused(store):
    """Both mistakes name the images and the state, and change nothing."""
    store.put_image(make_image("a"))
    store.put_image(make_image("b"))
    with pytest.raises(StateError) as onto:
        store.rename_image("a", "b")
    assert str(onto.value) == (
        f"cannot rename image a to b in {store.location}: b is already tracked"
    )
    with pytest.raises(StateError) as missing:
        store.rename_image("c", "d")
    assert str(missing.value) == (
        f"cannot rename image c in {store.location}: it is not in the state"
    )
    assert store.serial == 2


def test_removing_an_image_keeps_its_artifact(store):
    """Deleting stops tracking the name; the stored object stays until garbage collection."""
    store.put_artifact(make_artifact())
    store.put_image(present_image("hero", "ab" * 32))
    assert store.remove_image("hero") is True
    snapshot = store.snapshot()
    assert (dict(snapshot.images), list(snapshot.artifacts)) == ({}, ["ab" * 32])


def test_uploads_are_looked_up_by_digest_and_account(store):
    """A reference is uploaded once per account; a new upload replaces the old fileId."""
    store.put_upload(Upload("ab" * 32, "a@example.com", "asset:1", 1.0))
    store.put_upload(Upload("ab" * 32, "b@example.com", "asset:2", 1.0))
    store.put_upload(Upload("ab" * 32, "a@example.com", "asset:3", 2.0))
    assert store.snapshot().uploads == {
        ("ab" * 32, "a@example.com"): "asset:3",
        ("ab" * 32, "b@example.com"): "asset:2",
    }


def test_the_spend_ledger_sums_charges_and_refunds_by_time(backend):
    """spend_since counts lines recorded at or after the given time; refunds are negative."""
    now = [100.0]
    with backend.open(clock=lambda: now[0]) as store:
        store.record_spend("job-1", "k1:a", "a", "flux", 28, "generation")
        now[0] = 200.0
        store.record_spend("job-2", "k1:b", "b", "nano-banana", 49, "generation")
        store.record_spend("job-2", "k1:b", "b", "nano-banana", -49, "refund")
        store.record_spend("job-3", "k1:b", "b", "nano-banana", 49, "extra")
        assert store.total_spend() == 77.0
        assert store.spend_since(150.0) == 49.0
        assert store.spend_since(201.0) == 0.0


def test_recording_the_same_charge_twice_counts_it_once(store):
    """A resumed apply may record a charge again; the ledger must not double it."""
    assert store.record_spend("job-1", "k1:a", "a", "flux", 28, "generation") is True
    assert store.record_spend("job-1", "k1:a", "a", "flux", 28, "generation") is False
    assert store.total_spend() == 28.0
    assert store.serial == 1


def test_the_same_charge_with_another_amount_is_refused(store):
    """Two amounts for one charge means one of them is wrong: say so, keep the first."""
    store.record_spend("job-1", "k1:a", "a", "flux", 28, "generation")
    with pytest.raises(StateError) as caught:
        store.record_spend("job-1", "k1:a", "a", "flux", 30, "generation")
    assert str(caught.value) == (
        f"job job-1 is already in the spend ledger of {store.location} as generation "
        "of 28.0 credits, not 30"
    )


def test_close_leaves_no_wal_or_shm_file_beside_the_state(state_path):
    """After a command the state is one file, ready to commit to git (SQLite only)."""
    store = StateStore.open(state_path)
    store.put_image(make_image())
    assert sidecars(state_path) != []
    store.close()
    assert sidecars(state_path) == []
    assert StateStore.read_snapshot(state_path).serial == 1


def test_read_snapshot_of_a_missing_state_is_empty_and_creates_nothing(tmp_path):
    """plan on a new project reads an empty state and leaves the directory as it was (SQLite)."""
    path = tmp_path / "state" / "state.db"
    snapshot = StateStore.read_snapshot(path)
    assert (snapshot.lineage, snapshot.serial, dict(snapshot.images)) == (None, 0, {})
    assert list(tmp_path.iterdir()) == []


def test_read_snapshot_changes_nothing_and_leaves_no_sidecar_files(state_path):
    """Reading neither writes the file nor leaves -wal or -shm behind (SQLite only)."""
    with StateStore.open(state_path) as store:
        store.put_image(make_image())
    before = (state_path.read_bytes(), state_path.stat().st_mtime_ns)
    snapshot = StateStore.read_snapshot(state_path)
    assert snapshot.images["hero"] == make_image()
    assert (state_path.read_bytes(), state_path.stat().st_mtime_ns) == before
    assert sidecars(state_path) == []


def test_read_snapshot_sees_what_an_open_store_committed(store, backend):
    """A plan running beside an apply reads the apply's committed progress, and only that."""
    store.put_image(make_image("a"))
    with store.transaction():
        store.put_image(make_image("b"))
        assert set(backend.read_snapshot().images) == {"a"}
        assert set(store.snapshot().images) == {"a", "b"}
    assert set(backend.read_snapshot().images) == {"a", "b"}


def test_read_snapshot_does_not_import_sqlite_utils(state_path):
    """plan's read path stays on the standard library: sqlite-utils costs 70 ms (SQLite)."""
    with StateStore.open(state_path) as store:
        store.put_image(make_image())
    code = (
        "import sys; from ltx_reconcile.state import read_snapshot; from pathlib import Path; "
        f"s = read_snapshot(Path({str(state_path)!r})); "
        "print(len(s.images), 'sqlite_utils' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout == "1 False\n"


def test_a_sqlite_file_that_is_not_a_state_is_refused(state_path):
    """Pointing --state at some other SQLite database is caught before anything is written."""
    state_path.parent.mkdir()
    with sqlite3.connect(state_path) as conn:
        conn.execute("CREATE TABLE notes (text)")
    conn.close()
    with pytest.raises(StateError) as caught:
        StateStore.open(state_path)
    assert str(caught.value) == f"{state_path} is a SQLite file but not an ltx-reconcile state"
    with pytest.raises(StateError):
        StateStore.read_snapshot(state_path)


def test_an_empty_file_becomes_a_new_state(state_path):
    """A zero-byte file (say, from `touch`) is an empty SQLite database: it is initialised."""
    state_path.parent.mkdir()
    state_path.touch()
    assert StateStore.read_snapshot(state_path).lineage is None
    with StateStore.open(state_path) as store:
        assert store.serial == 0


def test_a_file_that_is_not_sqlite_is_reported_with_its_path(state_path):
    """A corrupt or foreign file is a StateError naming the path, not a traceback."""
    state_path.parent.mkdir()
    state_path.write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(StateError, match=str(state_path)):
        StateStore.open(state_path)
    with pytest.raises(StateError, match=str(state_path)):
        StateStore.read_snapshot(state_path)


def test_every_store_satisfies_the_backend_protocols(store):
    """The planner and executor are typed against the protocols, not a backend's class."""
    reader: StateReader = store
    backend: StateBackend = store
    assert reader.serial == backend.serial == 0


def test_a_schema_1_state_is_migrated_forward_keeping_its_rows(backend):
    """A state written before `protect` and pins existed opens, upgraded, with its images."""
    with backend.open(migrations=backend.migrations[:1]) as old:
        old.put_artifact(make_artifact())
        old.put_image(present_image("hero", "ab" * 32))
        lineage = old.lineage
    with backend.open() as store:
        assert store.lineage == lineage
        assert "hero" in store.snapshot().images
    assert len(backend.migrations) == SCHEMA_VERSION == 2
    assert backend.query("SELECT name, protect FROM images") == [("hero", 0)]
    assert backend.query("SELECT count(*) FROM pins") == [(0,)]


def test_the_schema_version_is_recorded_in_the_sqlite_file(state_path):
    """SQLite keeps the version in `user_version`, where a newer tool would look."""
    StateStore.open(state_path).close()
    conn = sqlite3.connect(state_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


def test_a_replaced_image_takes_the_defaults_of_the_fields_it_leaves_out(store):
    """put_image replaces the whole row: a protected image written again unprotected is not."""
    store.put_image(make_image(protect=True))
    assert store.snapshot().images["hero"].protect is True
    store.put_image(make_image())
    assert store.snapshot().images["hero"] == make_image()


def test_records_read_back_exactly_as_written(store):
    """Times, costs and 64-bit fingerprints survive the round trip bit for bit."""
    artifact = make_artifact(cost=28.1, created_at=1_700_000_000.123456)
    image = present_image("hero", artifact.digest)._replace(
        output_stat=OutputStat(2**40, 1_700_000_000_123_456_789, 2**62), updated_at=0.1 + 0.2
    )
    with store.transaction():
        store.put_artifact(artifact)
        store.put_image(image)
    snapshot = store.snapshot()
    assert snapshot.artifacts[artifact.digest] == artifact
    assert snapshot.images["hero"] == image


def test_pins_are_kept_once_and_released(store):
    """Pinning twice changes nothing the second time; unpinning an unpinned digest is False."""
    assert store.pin("ab" * 32, "the hero shot") is True
    assert store.pin("ab" * 32, "again") is False
    assert store.snapshot().pins["ab" * 32].note == "the hero shot"
    assert store.unpin("ab" * 32) is True
    assert store.unpin("ab" * 32) is False
    assert store.serial == 2


def test_one_image_is_read_back_as_it_was_put_and_a_missing_one_is_none(store):
    """`image(name)` reads the row now (shared applies check it before writing it again)."""
    record = present_image("hero", "a" * 64)
    with store.transaction():
        store.put_artifact(make_artifact("a" * 64))
        store.put_image(record)

    assert store.image("hero") == record
    assert store.image("villain") is None
