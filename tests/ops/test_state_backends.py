"""Every day-two command on either state backend: the file, or a PostgreSQL state.

The modules that pin each command's wording run on the file (and gc, verify and import on
both); these tests pin that `state list/show/rm/mv`, `show`, `force-unlock` and `gallery`
read and write the state the settings name (`state pull/push` across backends:
test_transfer_postgres.py).
"""

from __future__ import annotations

import json

import pytest

from ltx_reconcile.errors import ExitCode
from ltx_reconcile.state.lease import ProcessIdentity, acquire, current_lease
from testing.workspace import STATE_BACKENDS, CliWorkspace
from tests.apply.specs import THREE_IMAGES

pytestmark = pytest.mark.parametrize("state_backend", STATE_BACKENDS, indirect=True)

ELSEWHERE = ProcessIdentity(pid=4242, host="build-runner-7", user="ci", start_token=None)
"""An apply on another machine sharing the state: its lease is never presumed dead early."""


@pytest.fixture
def applied(workspace: CliWorkspace) -> CliWorkspace:
    """`workspace` with cat, dog and owl applied."""
    workspace.specs(THREE_IMAGES)
    run = workspace.apply()
    assert run.returncode == ExitCode.OK, run.stderr
    return workspace


def test_state_list_show_rm_and_mv_read_and_write_the_named_state(applied: CliWorkspace) -> None:
    """list and show read the state; mv and rm change it, one serial each."""
    serial = applied.snapshot().serial
    listed = json.loads(applied.ok("state", "list", "--json"))
    assert [image["name"] for image in listed] == ["cat", "dog", "owl"]
    shown = json.loads(applied.ok("state", "show", "cat", "--json"))
    assert shown["key"] == applied.images()["cat"].key

    applied.ok("state", "mv", "cat", "kitten")
    applied.ok("state", "rm", "dog")

    assert sorted(applied.images()) == ["kitten", "owl"]
    assert applied.snapshot().serial == serial + 2


def test_show_sums_up_the_named_state(applied: CliWorkspace) -> None:
    """`show --json` reports the lineage, serial, images and spend of the state in use."""
    snapshot = applied.snapshot()
    summary = json.loads(applied.ok("show", "--json"))
    assert (summary["lineage"], summary["serial"]) == (snapshot.lineage, snapshot.serial)
    assert summary["images"] == {"total": 3, "present": 3}
    assert summary["spent"] == sum(applied.recorded_spend().values())
    # The location as the user named it: a URL is not a path ("postgresql:/" lost a slash).
    first = applied.ok("show").splitlines()[0]
    assert first.startswith(f"State {applied.state_display}: lineage {snapshot.lineage}"), first


def test_force_unlock_frees_the_lease_another_host_left_behind(applied: CliWorkspace) -> None:
    """A lease held on another host blocks apply (exit 4) until force-unlock removes it."""
    with applied.open_state() as store:
        lock_id = acquire(store, "apply", timeout_s=0, identity=ELSEWHERE).lock_id

    # Not the default wait: on PostgreSQL an apply waits 120 s for other runners' planning.
    refused = applied.apply("--lock-timeout", "0")
    assert refused.returncode == ExitCode.STATE
    assert f"`ltx-reconcile force-unlock {lock_id}`" in refused.stderr

    unlocked = applied.ok("force-unlock", lock_id)

    assert unlocked.splitlines() == [
        f"Unlocked: removed lease {lock_id} held by ci@build-runner-7 (pid 4242, apply)."
    ]
    with applied.open_state() as store:
        assert current_lease(store) is None
    assert applied.apply().returncode == ExitCode.OK


def test_gallery_shows_the_pictures_the_named_state_records(applied: CliWorkspace) -> None:
    """The gallery page of an applied workspace shows each recorded picture."""
    stdout = applied.ok("gallery", "--out", "gallery")

    # "present" comes from the state: without it every image would be new.
    assert stdout.splitlines() == ["Wrote gallery/index.html: 3 images (3 present)."]
    page = (applied.root / "gallery" / "index.html").read_text()
    for name in ("cat", "dog", "owl"):
        assert name in page
