"""The lease's rules, on SQLite and on PostgreSQL: one holder, takeover, heartbeat, unlock.

Every test takes `store` or `backend` (tests/state/conftest.py), so each rule is pinned on
both backends. Other processes are stood in for by `ProcessIdentity` values: a live one is
this test process itself, a dead one a child that has exited and been reaped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from ltx_reconcile.errors import StateError, StateLockedError
from ltx_reconcile.state.lease import (
    ProcessIdentity,
    acquire,
    current_lease,
    force_unlock,
    heartbeat,
    release,
)
from ltx_reconcile.state.store import BaseStateStore
from tests.state.conftest import Backend
from tests.state.factories import make_image

ME = ProcessIdentity.current()
ELSEWHERE = ProcessIdentity(pid=4242, host="build-runner-7", user="ci", start_token=None)
"""A holder on another machine: only its expiry can show that it is gone."""


def _dead_local_process() -> ProcessIdentity:
    """A process on this host that has exited (and been reaped)."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return ProcessIdentity(int(child.stdout), ME.host, "ghost", start_token=None)


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_live_holder_keeps_the_lease_and_the_refusal_names_it(backend: Backend) -> None:
    """A second taker times out with exit-4's error naming the holder and the unlock command;
    taking and refusing the lease never moves the serial."""
    with backend.open() as first, backend.open() as second:
        lease = acquire(first, "apply", timeout_s=0)
        assert current_lease(second) == lease
        with pytest.raises(StateLockedError) as caught:
            acquire(second, "gc --force", timeout_s=0.2)
        assert f"state {second.location} is locked by {ME.owner} (pid {ME.pid}, apply" in str(
            caught.value
        )
        assert f"ltx-reconcile force-unlock {lease.lock_id}" in str(caught.value.hint)
        assert release(first, lease) is True
        assert acquire(second, "gc --force", timeout_s=0).operation == "gc --force"
        assert second.serial == 0


def test_a_dead_holder_on_this_host_is_taken_over_at_once(store: BaseStateStore) -> None:
    """A lease whose process is gone does not wait for its expiry."""
    stale = acquire(store, "apply", timeout_s=0, identity=_dead_local_process(), ttl_s=3600)

    taken = acquire(store, "apply", timeout_s=0)

    assert (taken.pid, taken.lock_id != stale.lock_id) == (ME.pid, True)


def test_a_holder_on_another_host_is_taken_over_only_after_it_expires(
    store: BaseStateStore,
) -> None:
    """Another host's lease holds until it missed its heartbeats for ttl_s, then goes."""
    clock = FakeClock()
    foreign = acquire(store, "apply", timeout_s=0, ttl_s=30, clock=clock, identity=ELSEWHERE)
    clock.now += 29
    with pytest.raises(StateLockedError):
        acquire(store, "apply", timeout_s=0, clock=clock)
    assert current_lease(store) == foreign

    clock.now += 1
    taken = acquire(store, "apply", timeout_s=0, clock=clock)

    assert (taken.host, taken.pid) == (ME.host, ME.pid)


def test_heartbeat_extends_the_lease_until_it_is_force_unlocked(store: BaseStateStore) -> None:
    """A beat moves the expiry; after force-unlock the holder's next beat fails loudly."""
    clock = FakeClock()
    lease = acquire(store, "apply", timeout_s=0, ttl_s=30, clock=clock)
    clock.now += 20
    beaten = heartbeat(store, lease, ttl_s=30, clock=clock)
    assert (beaten.heartbeat_at, beaten.expires_at) == (clock.now, clock.now + 30)

    removed = force_unlock(store, lease.lock_id)

    assert removed.lock_id == lease.lock_id
    assert current_lease(store) is None
    with pytest.raises(StateLockedError, match=f"lost the lease {lease.lock_id}"):
        heartbeat(store, lease, clock=clock)
    assert release(store, lease) is False
    assert store.serial == 0


def test_force_unlock_needs_the_lock_id_of_the_lease_held(store: BaseStateStore) -> None:
    """A stale id unlocks nothing; with no lease there is nothing to unlock."""
    with pytest.raises(StateError, match="no lease is held"):
        force_unlock(store, "anything")
    lease = acquire(store, "apply", timeout_s=0, identity=ELSEWHERE)
    with pytest.raises(StateError, match="does not match the lease") as caught:
        force_unlock(store, "not-the-id")
    assert "copy LOCK_ID" in str(caught.value.hint)
    assert current_lease(store) == lease


def test_the_lease_is_refused_inside_a_transaction(store: BaseStateStore) -> None:
    """Taking the lease mid-transaction is a bug, said as much."""
    with store.transaction(), pytest.raises(StateError, match="outside any transaction"):
        acquire(store, "apply", timeout_s=0)


def test_racing_takers_on_separate_connections_give_exactly_one_holder(backend: Backend) -> None:
    """Eight connections asking at once: one lease, and everyone agrees whose."""
    stores = [backend.open() for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    won: list[str] = []
    refused: list[int] = []

    def take(store: BaseStateStore, index: int) -> None:
        # Each taker stands for a different live process on this host: this one, by pid.
        me = ProcessIdentity(os.getpid(), ME.host, f"taker{index}", ME.start_token)
        barrier.wait()
        try:
            won.append(acquire(store, "apply", timeout_s=0, identity=me).lock_id)
        except StateLockedError:
            refused.append(index)

    threads = [threading.Thread(target=take, args=(s, i)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert (len(won), len(refused)) == (1, 7)
        holder = current_lease(stores[0])
        assert holder is not None
        assert holder.lock_id == won[0]
    finally:
        for store in stores:
            store.close()


def test_on_postgresql_taking_the_lease_never_waits_for_a_state_writer(backend: Backend) -> None:
    """The lease's advisory lock is not the writers' `meta` lock: a writer mid-transaction
    does not hold up the lease, and the lease's writes leave the serial alone."""
    if backend.name != "postgresql":
        pytest.skip("SQLite has one write lock for both: BEGIN IMMEDIATE waits for the writer")
    with backend.open() as writer, backend.open() as taker:
        with writer.transaction():
            writer.put_image(make_image("hero"))
            started = time.monotonic()
            lease = acquire(taker, "apply", timeout_s=0)
            assert time.monotonic() - started < 1.0
        assert current_lease(writer) == lease
        assert writer.serial == 1
