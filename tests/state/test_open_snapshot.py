"""open_snapshot: the plan's read of the state, artifact rows read only when looked up."""

from __future__ import annotations

import pytest

from ltx_reconcile.errors import StateError
from ltx_reconcile.state.snapshot import open_snapshot, read_snapshot
from tests.state.factories import make_artifact, make_image, present_image

# open_snapshot reads SQLite state files only: `store` is the SQLite one here.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@sqlite_only
def test_it_reads_what_read_snapshot_reads(store, state_path):
    """Images, artifacts by digest and by key, serial and lineage agree with read_snapshot."""
    store.put_artifact(make_artifact("01" * 32, created_at=20.0))
    store.put_artifact(make_artifact("02" * 32, created_at=10.0))
    store.put_artifact(make_artifact("03" * 32, created_at=20.0))
    store.put_artifact(make_artifact("04" * 32, key="k1:other", created_at=5.0))
    store.put_image(present_image("hero", "03" * 32))
    store.put_image(make_image("villain"))
    eager = read_snapshot(state_path)
    with open_snapshot(state_path) as lazy:
        assert (lazy.lineage, lazy.serial) == (eager.lineage, eager.serial)
        assert dict(lazy.images) == dict(eager.images)
        assert set(lazy.artifacts) == set(eager.artifacts)
        assert {d: lazy.artifacts[d] for d in lazy.artifacts} == dict(eager.artifacts)
        assert dict(lazy.artifacts_by_key) == dict(eager.artifacts_by_key)
        assert lazy.artifacts_by_key["k1:hero"].digest == "03" * 32  # newest; ties: later


@sqlite_only
def test_artifact_rows_come_from_the_snapshot_not_from_later_writes(store, state_path):
    """A row looked up inside the block is the one of the snapshot, whatever commits since."""
    store.put_artifact(make_artifact("01" * 32))
    with open_snapshot(state_path) as snapshot:
        store.put_artifact(make_artifact("02" * 32))
        assert "02" * 32 not in snapshot.artifacts
        assert snapshot.artifacts["01" * 32].digest == "01" * 32
        with pytest.raises(KeyError):
            snapshot.artifacts["02" * 32]


@sqlite_only
def test_an_artifact_not_read_inside_the_block_cannot_be_read_after_it(store, state_path):
    """After the block the read transaction is over: an unread row raises StateError."""
    store.put_artifact(make_artifact("01" * 32))
    store.put_artifact(make_artifact("02" * 32, key="k1:other"))
    with open_snapshot(state_path) as snapshot:
        read_inside = snapshot.artifacts["01" * 32]
    assert snapshot.artifacts["01" * 32] == read_inside
    assert "02" * 32 in snapshot.artifacts
    with pytest.raises(StateError, match="closed"):
        snapshot.artifacts["02" * 32]


def test_a_missing_state_reads_as_empty_and_is_not_created(state_path):
    """No file: an empty snapshot, and still no file afterwards."""
    with open_snapshot(state_path) as snapshot:
        assert snapshot.lineage is None
        assert dict(snapshot.images) == {}
    assert not state_path.exists()
