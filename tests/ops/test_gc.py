"""`ltx-reconcile gc`: unreachable objects with their price, deleted only when forced.

Objects become unreachable the way users make them so: a prompt changes and apply pays for
the new picture. The roots a test needs beyond images (an open journal entry, a lease held
by another process) are written with the state's own classes, as a killed apply leaves them.
Every test runs on the state file and on a PostgreSQL state.
"""

from __future__ import annotations

import pytest

from ltx_reconcile.artifacts import ArtifactStore
from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from ltx_reconcile.state.journal import Journal
from ltx_reconcile.state.lease import acquire, release
from testing.workspace import EMAIL, STATE_BACKENDS, CliWorkspace
from tests.apply.specs import ONE_IMAGE as CAT
from tests.s3.bucket import STORE_BACKENDS, BucketView

pytestmark = pytest.mark.parametrize("state_backend", STATE_BACKENDS, indirect=True)

RAINY_CAT = CAT.replace("on a windowsill", "in the rain")

DRY_RUN_LINE = (
    "Dry run: nothing was deleted. `ltx-reconcile gc --force` deletes these objects; "
    "their artifact rows stay, as the record of what was paid."
)


@pytest.fixture
def stray(workspace: CliWorkspace) -> str:
    """An applied `cat`, and an object in the store that no row records; its digest."""
    workspace.specs(CAT)
    assert workspace.apply().returncode == ExitCode.OK
    return workspace.store.put_bytes(b"an object nothing records").digest


@pytest.fixture
def orphaned(workspace: CliWorkspace) -> str:
    """A workspace whose first picture of `cat` nothing uses any more; its digest."""
    workspace.specs(CAT)
    assert workspace.apply().returncode == ExitCode.OK
    first = str(workspace.images()["cat"].digest)
    workspace.specs(RAINY_CAT)
    assert workspace.apply().returncode == ExitCode.OK
    assert workspace.images()["cat"].digest != first
    return first


def object_line(digest: str, size: int) -> str:
    """The line gc prints for an object of a flux image that cost 28 credits."""
    return f"  {digest}  {size:,} bytes  28 credits  flux"


@pytest.mark.parametrize("artifact_store", STORE_BACKENDS, indirect=True)
def test_gc_lists_an_orphaned_object_with_its_size_and_credits_and_deletes_it_when_forced(
    workspace: CliWorkspace,
    emulator: RunningEmulator,
    artifact_store: ArtifactStore | BucketView,  # before `orphaned`: its applies use the store
    orphaned: str,
) -> None:
    """The dry run deletes nothing; --force deletes the object (from the bucket, on S3),
    keeps its row; verify is clean."""
    size = artifact_store.size(orphaned)

    dry = workspace.run("gc")

    assert dry.returncode == ExitCode.OK, dry.stderr
    assert dry.stdout.splitlines() == [
        f"1 unreachable object: {size:,} bytes, 28 credits paid for it.",
        object_line(orphaned, size),
        "Kept 1: 1 used by an image.",
        DRY_RUN_LINE,
    ]
    assert artifact_store.contains(orphaned)

    forced = workspace.run("gc", "--force")

    assert forced.returncode == ExitCode.OK, forced.stderr
    assert forced.stdout.splitlines()[0] == (
        f"Deleted 1 unreachable object: {size:,} bytes, 28 credits paid for it."
    )
    assert not artifact_store.contains(orphaned)
    assert orphaned in workspace.snapshot().artifacts
    check = workspace.run("verify")
    assert check.returncode == ExitCode.OK, check.stdout
    assert check.stdout.splitlines() == [
        "Checked 1 stored object, 1 output file and 1 image.",
        "No drift: everything verifies.",
    ]
    assert workspace.run("gc").stdout.splitlines() == [
        "Nothing to collect: every stored object is in use.",
        "Kept 1: 1 used by an image.",
    ]
    assert len(emulator.charges()) == 2


def test_gc_never_deletes_what_an_open_journal_entry_may_need(
    workspace: CliWorkspace, orphaned: str
) -> None:
    """An open entry keeps its key's stored artifact, and unrecorded objects (its download)."""
    old_key = workspace.snapshot().artifacts[orphaned].key
    stray = workspace.store.put_bytes(b"a download stored just before a kill").digest
    with workspace.open_state() as store:
        Journal(store).record_intent(old_key, "cat", EMAIL, {"prompt": "x"}, "0" * 64)

    dry = workspace.run("gc")

    assert dry.stdout.splitlines() == [
        "Nothing to collect: every stored object is in use.",
        "Kept 3: 1 used by an image, 1 named by an open journal entry, "
        "1 unrecorded, kept while a journal entry is open.",
    ]
    assert workspace.run("gc", "--force").returncode == ExitCode.OK
    assert workspace.store.contains(orphaned)
    assert workspace.store.contains(stray)


def test_a_pinned_object_is_kept_until_unpinned(workspace: CliWorkspace, stray: str) -> None:
    """gc --pin keeps an unused object through gc --force; gc --unpin lets it go again."""
    pinned = workspace.run("gc", "--pin", stray, "--note", "the first draft")
    assert pinned.returncode == ExitCode.OK, pinned.stderr
    assert pinned.stdout.splitlines() == [f"Pinned {stray}: gc keeps it."]
    assert workspace.snapshot().pins[stray].note == "the first draft"

    forced = workspace.run("gc", "--force")

    assert forced.stdout.splitlines() == [
        "Nothing to collect: every stored object is in use.",
        "Kept 2: 1 used by an image, 1 pinned.",
    ]
    assert workspace.store.contains(stray)
    unpinned = workspace.run("gc", "--unpin", stray)
    assert unpinned.stdout.splitlines() == [
        f"Unpinned {stray}: gc deletes it once no image uses it."
    ]
    size = workspace.store.size(stray)
    assert workspace.run("gc").stdout.splitlines()[1] == (
        f"  {stray}  {size:,} bytes  credits unknown (no artifact row)"
    )


def test_pin_refuses_what_is_not_a_known_digest(workspace: CliWorkspace, stray: str) -> None:
    """A typo, an unknown digest and unpinning what is not pinned exit 3 and change nothing."""
    serial = workspace.snapshot().serial
    unknown = "f" * 64

    typo = workspace.run("gc", "--pin", stray[:-1])
    missing = workspace.run("gc", "--pin", unknown)
    not_pinned = workspace.run("gc", "--unpin", stray)

    assert [r.returncode for r in (typo, missing, not_pinned)] == [ExitCode.INVALID_INPUT] * 3
    assert f"Error: '{stray[:-1]}' is not a digest (64 lowercase hex digits)" in typo.stderr
    assert f"Error: no object {unknown} is in the store or the state" in missing.stderr
    assert f"Error: {stray} is not pinned" in not_pinned.stderr
    assert workspace.snapshot().serial == serial
    assert workspace.snapshot().pins == {}


def test_gc_force_deletes_nothing_while_another_process_holds_the_lease(
    workspace: CliWorkspace, stray: str
) -> None:
    """A live holder of the lease (an apply) makes gc --force exit 4 without deleting."""
    with workspace.open_state() as store:
        lease = acquire(store, "apply", timeout_s=0)
        try:
            run = workspace.run("gc", "--force")
        finally:
            release(store, lease)

    assert run.returncode == ExitCode.STATE
    assert f"Error: state {workspace.state_location} is locked by " in run.stderr
    assert workspace.store.contains(stray)


def test_gc_without_a_state_refuses_rather_than_call_everything_garbage(
    workspace: CliWorkspace,
) -> None:
    """With no state, nothing says what is in use: gc exits 4 and deletes nothing."""
    digest = workspace.store.put_bytes(b"an object from somewhere").digest

    run = workspace.run("gc", "--force")

    assert run.returncode == ExitCode.STATE
    assert f"Error: there is no state at {workspace.state_display}" in run.stderr
    assert workspace.store.contains(digest)
