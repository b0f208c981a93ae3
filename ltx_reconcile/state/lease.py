"""The lease: at most one process writes the state at a time.

The lease is a single row in the state (owner, pid, host, operation, heartbeat, expiry),
on either backend: one implementation of the rules, in SQL SQLite and PostgreSQL share.
Taking it is one short critical section that reads the row and replaces it, so two
processes can never both win. The store supplies the section (`_lease_section`, the one
per-backend hook): on SQLite an ordinary write transaction, which `BEGIN IMMEDIATE`
serialises; on PostgreSQL a transaction holding an advisory lock on the lease, which
leaves the state's own writers alone (postgres.py). A holder is presumed alive until shown
otherwise:

- on the same host, a holder whose process is gone (no such pid, a zombie, or a pid now
  used by a process that started at another time) is taken over at once;
- on another host, where we cannot look, a holder is taken over only once its lease has
  expired, that is when it missed its heartbeats for `ttl_s`;
- a live holder on the same host is never taken over, whatever its expiry says.

Lease writes do not change the serial: the lease is coordination, not state, and taking
it must not make a saved plan look stale. Time and waiting come in as `clock` and `sleep`.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from ltx_reconcile.errors import StateError, StateLockedError
from ltx_reconcile.state.codec import LEASE_COLUMNS, lease_from_row, lease_to_row
from ltx_reconcile.state.records import Lease
from ltx_reconcile.state.store import BaseStateStore

__all__ = [
    "DEFAULT_TTL_S",
    "ProcessIdentity",
    "acquire",
    "current_lease",
    "exclude_applies",
    "force_unlock",
    "heartbeat",
    "release",
]

DEFAULT_TTL_S: Final = 30.0
"""How long a lease lasts without a heartbeat; the holder should beat every ttl_s / 3."""

_FIRST_POLL_S: Final = 0.05
_MAX_POLL_S: Final = 1.0

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """Who is asking for the lease: this process, unless a test stands in for another."""

    pid: int
    host: str
    user: str
    start_token: str | None
    """The process start time from /proc (Linux); None where it cannot be read."""

    @classmethod
    def current(cls) -> ProcessIdentity:
        """The identity of the running process."""
        pid = os.getpid()
        return cls(pid=pid, host=socket.gethostname(), user=_user(), start_token=_start_token(pid))

    @property
    def owner(self) -> str:
        """`user@host`, as lock messages show it."""
        return f"{self.user}@{self.host}"


def acquire(
    store: BaseStateStore,
    operation: str,
    *,
    timeout_s: float,
    ttl_s: float = DEFAULT_TTL_S,
    clock: Clock = time.time,
    sleep: Sleep = time.sleep,
    identity: ProcessIdentity | None = None,
) -> Lease:
    """Take the state's lease for `operation`, waiting up to `timeout_s` for its holder.

    Polls with a backoff from 50 ms to 1 s. A dead holder on this host, or an expired one
    on another, is taken over (see the module docstring). Raises `StateLockedError`, naming
    the holder and how to force-unlock, when the lease is still held after `timeout_s`, and
    `StateError` when called inside an open transaction.
    """
    if store.in_transaction:
        raise StateError(
            f"the lease on {store.location} must be taken outside any transaction",
            hint="this is a bug in ltx-reconcile",
        )
    me = identity or ProcessIdentity.current()
    deadline = clock() + timeout_s
    poll_s = _FIRST_POLL_S
    while True:
        is_ours, lease = _try_take(store, operation, ttl_s, clock(), me)
        if is_ours:
            return lease
        remaining_s = deadline - clock()
        if remaining_s <= 0:
            raise _locked_error(store.location, lease, timeout_s)
        sleep(min(poll_s, remaining_s))
        poll_s = min(poll_s * 2, _MAX_POLL_S)


def exclude_applies(
    store: BaseStateStore,
    *,
    timeout_s: float,
    clock: Clock = time.time,
    sleep: Sleep = time.sleep,
) -> None:
    """Wait up to `timeout_s` until no apply works on a shared state, and keep them out.

    On PostgreSQL several applies run at once, each outside the lease once it has planned
    (issue 8); a command that needs the state to itself (gc, verify --repair, state edits)
    holds the lease and then this, until `store.end_exclusion()`. A state file has nothing
    to wait for: its applies hold the lease throughout. Raises `StateLockedError` when
    applies still run after `timeout_s`.
    """
    deadline = clock() + timeout_s
    poll_s = _FIRST_POLL_S
    while not store.exclude_applies():
        remaining_s = deadline - clock()
        if remaining_s <= 0:
            raise StateLockedError(
                f"state {store.location} is in use by running applies; waited {timeout_s:g} s",
                hint="wait for them to finish (or pass a longer --lock-timeout) and try again",
            )
        sleep(min(poll_s, remaining_s))
        poll_s = min(poll_s * 2, _MAX_POLL_S)


def heartbeat(
    store: BaseStateStore, lease: Lease, *, ttl_s: float = DEFAULT_TTL_S, clock: Clock = time.time
) -> Lease:
    """Extend `lease` to `ttl_s` from now.

    Raises `StateLockedError` if the lease is no longer ours (force-unlocked, or taken
    over after it expired): the caller must stop writing at once.
    """
    now = clock()
    with _section(store):
        updated = store._execute(
            "UPDATE lease SET heartbeat_at = ?, expires_at = ? WHERE id = 1 AND lock_id = ?",
            (now, now + ttl_s, lease.lock_id),
        ).rowcount
        holder = current_lease(store)
    if updated == 0 or holder is None:
        raise StateLockedError(
            f"lost the lease {lease.lock_id} on {store.location}"
            + ("" if holder is None else f"; it is now held by {_describe(holder)}"),
            hint="another process may have changed the state; run the command again",
        )
    return holder


def release(store: BaseStateStore, lease: Lease) -> bool:
    """Give the lease back; False (and nothing removed) if it was no longer ours."""
    with _section(store):
        return (
            store._execute(
                "DELETE FROM lease WHERE id = 1 AND lock_id = ?", (lease.lock_id,)
            ).rowcount
            > 0
        )


def force_unlock(store: BaseStateStore, lock_id: str) -> Lease:
    """Remove the lease with id `lock_id`, whoever holds it, and return what was removed.

    Raises `StateError` when no lease is held or `lock_id` is not the one held: the id
    guards against unlocking a lease that changed hands since the message was read.
    """
    with _section(store):
        holder = current_lease(store)
        if holder is None:
            raise StateError(f"no lease is held on {store.location}; nothing to unlock")
        if holder.lock_id != lock_id:
            raise StateError(
                f"lock id {lock_id} does not match the lease on {store.location}, "
                f"held by {_describe(holder)} with lock id {holder.lock_id}",
                hint="copy LOCK_ID from the latest lock message; the lease may have changed hands",
            )
        store._execute("DELETE FROM lease WHERE id = 1")
        return holder


def current_lease(store: BaseStateStore) -> Lease | None:
    """The lease as it stands, or None when nobody holds it."""
    row = store._execute(f"SELECT {LEASE_COLUMNS} FROM lease WHERE id = 1").fetchone()  # noqa: S608 (constant columns)
    return None if row is None else lease_from_row(row)


def _try_take(
    store: BaseStateStore, operation: str, ttl_s: float, now: float, me: ProcessIdentity
) -> tuple[bool, Lease]:
    """One atomic attempt: (True, our new lease) or (False, the holder that kept it)."""
    with _section(store):
        holder = current_lease(store)
        if holder is not None and not _is_gone(holder, now, me):
            return False, holder
        lease = Lease(
            lock_id=str(uuid.uuid4()),
            owner=me.owner,
            pid=me.pid,
            host=me.host,
            operation=operation,
            acquired_at=now,
            heartbeat_at=now,
            expires_at=now + ttl_s,
            pid_start=me.start_token,
        )
        row = lease_to_row(lease)
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        # An upsert both databases speak (SQLite since 3.24), in place of INSERT OR REPLACE.
        updates = ", ".join(f"{column} = excluded.{column}" for column in row if column != "id")
        store._execute(
            f"INSERT INTO lease ({columns}) VALUES ({marks}) "  # noqa: S608 (our columns)
            f"ON CONFLICT (id) DO UPDATE SET {updates}",
            tuple(row.values()),
        )
        return True, lease


def _section(store: BaseStateStore) -> AbstractContextManager[None]:
    """The critical section of one lease read-and-write: the store's own, if it has one.

    Lease writes go through `_execute` only, never `_write`, so the serial does not move.
    """
    section: Callable[[], AbstractContextManager[None]] | None = getattr(
        store, "_lease_section", None
    )
    return store.transaction() if section is None else section()


def _is_gone(holder: Lease, now: float, me: ProcessIdentity) -> bool:
    if holder.host != me.host:
        return now >= holder.expires_at
    return not _is_running(holder.pid, holder.pid_start)


def _is_running(pid: int, start_token: str | None) -> bool:
    # pid 0 and negative pids address process groups in os.kill, not a process.
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    status = _proc_status(pid)
    if status is None:
        return True  # no /proc here: existence is all we can know
    state, token = status
    # A zombie has exited and only waits to be reaped; a different start time means the
    # pid was reused by an unrelated process after the holder died.
    if state in {"Z", "X"}:
        return False
    return start_token is None or token == start_token


def _proc_status(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) from /proc/<pid>/stat, if readable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], fields[19]


def _start_token(pid: int) -> str | None:
    status = _proc_status(pid)
    return None if status is None else status[1]


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _describe(lease: Lease) -> str:
    since = datetime.fromtimestamp(lease.acquired_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{lease.owner} (pid {lease.pid}, {lease.operation}, since {since})"


def _locked_error(location: str, holder: Lease, timeout_s: float) -> StateLockedError:
    return StateLockedError(
        f"state {location} is locked by {_describe(holder)}; waited {timeout_s:g} s",
        hint=(
            "wait for it to finish and try again; if that process is gone, run "
            f"`ltx-reconcile force-unlock {holder.lock_id}`"
        ),
    )
