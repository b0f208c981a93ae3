"""`ltx-reconcile force-unlock`: removing a lease whose holder is gone."""

from __future__ import annotations

from pathlib import Path

import pytest

from ltx_reconcile.cli.main import main
from ltx_reconcile.errors import ExitCode
from ltx_reconcile.state.lease import ProcessIdentity, acquire, current_lease
from ltx_reconcile.state.store import StateStore

ELSEWHERE = ProcessIdentity(pid=4242, host="build-runner-7", user="ci", start_token=None)


@pytest.fixture
def held(tmp_path: Path) -> str:
    """A state whose lease is held by a process on another host; its lock id."""
    with StateStore.open(tmp_path / "state" / "state.db") as store:
        return acquire(store, "apply", timeout_s=0, identity=ELSEWHERE).lock_id


def test_force_unlock_removes_the_named_lease_and_says_whose_it_was(tmp_path, held, capsys):
    """The lease named by its lock id is gone afterwards, and the output names its holder."""
    assert main(["-C", str(tmp_path), "force-unlock", held]) == ExitCode.OK
    assert capsys.readouterr().out.splitlines() == [
        f"Unlocked: removed lease {held} held by ci@build-runner-7 (pid 4242, apply)."
    ]
    with StateStore.open(tmp_path / "state" / "state.db") as store:
        assert current_lease(store) is None


def test_force_unlock_refuses_a_lock_id_that_is_not_the_one_held(tmp_path, held, capsys):
    """A stale or mistyped id unlocks nothing: the lease may have changed hands."""
    assert main(["-C", str(tmp_path), "force-unlock", "not-the-id"]) == ExitCode.STATE
    assert "lock id not-the-id does not match the lease" in capsys.readouterr().err
    with StateStore.open(tmp_path / "state" / "state.db") as store:
        lease = current_lease(store)
    assert lease is not None
    assert lease.lock_id == held


def test_force_unlock_without_a_state_creates_none(tmp_path, capsys):
    """No state file: a state error, and no state file appears."""
    assert main(["-C", str(tmp_path), "force-unlock", "anything"]) == ExitCode.STATE
    assert "there is no state at state/state.db" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()
