"""`ltx-reconcile state list|show|rm|mv`: look into the state and edit it, through the CLI.

One apply per module makes a state of three images; each test works on its own copy of
that workspace (the state file copied, stored objects and output files hard-linked, so
their recorded inodes still match), through real `python -m ltx_reconcile` processes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from ltx_reconcile.state.lease import ProcessIdentity, acquire, release
from ltx_reconcile.state.store import StateStore
from testing.workspace import EMAIL, CliWorkspace
from tests.apply.specs import THREE_IMAGES

ELSEWHERE = ProcessIdentity(pid=4242, host="build-runner-7", user="ci", start_token=None)


APPLIED_SPECS = THREE_IMAGES
"""What `ws` (tests/ops/conftest.py) starts from: applied once per module."""


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_state_list_prints_a_table_of_every_image(ws: CliWorkspace) -> None:
    """One aligned line per image: name, status, model, credits paid, digest prefix, output."""
    snapshot = ws.snapshot()
    images = snapshot.images
    cost = {name: int(snapshot.artifacts[r.digest].cost) for name, r in images.items()}  # type: ignore[index]

    lines = ws.ok("state", "list").splitlines()

    assert lines == [
        "NAME  STATUS   MODEL  COST  DIGEST        OUTPUT",
        *(
            f"{name}   present  flux   {cost[name]:<4}  {images[name].digest[:12]}  out/{name}.png"  # type: ignore[index]
            for name in ("cat", "dog", "owl")
        ),
    ]


def test_state_list_filters_by_glob_and_prints_json(ws: CliWorkspace) -> None:
    """PATTERN is a glob over names; --json gives every column, the full digest included."""
    assert [line.split()[0] for line in ws.ok("state", "list", "?o*").splitlines()] == [
        "NAME",
        "dog",
    ]
    assert ws.ok("state", "list", "z*").splitlines() == ["No images in the state match z*."]

    listed = json.loads(ws.ok("state", "list", "--json", "[co]*"))

    record = ws.images()["cat"]
    assert [item["name"] for item in listed] == ["cat", "owl"]
    assert listed[0] == {
        "name": "cat",
        "status": "present",
        "model": "flux",
        "cost": ws.snapshot().artifacts[record.digest].cost,  # type: ignore[index]
        "digest": record.digest,
        "output": "out/cat.png",
    }


def test_state_show_names_key_artifact_store_path_and_provenance(ws: CliWorkspace) -> None:
    """show NAME gives the key, inputs, digest and where its object is, the job, the cost."""
    record = ws.images()["dog"]
    assert record.digest is not None
    artifact = ws.snapshot().artifacts[record.digest]
    stored = ws.store.path_for(record.digest).relative_to(ws.root)

    lines = ws.ok("state", "show", "dog").splitlines()

    assert lines[:3] == ["image:    dog", "status:   present", f"key:      {record.key}"]
    assert "protect:  false" in lines
    assert f"artifact: {record.digest}" in lines
    assert f"  stored at: {stored}" in lines
    assert f"  source:    generated (job {artifact.job_id}, account {EMAIL})" in lines
    assert f"  cost:      {int(artifact.cost)} credits" in lines
    assert lines[lines.index("inputs:") + 1 :] == [
        '  aspectRatio: "16:9"',
        '  model: "flux"',
        '  prompt: "a dog in the snow"',
        "  seed: 2",
    ]

    shown = json.loads(ws.ok("state", "show", "dog", "--json"))
    assert shown["key"] == record.key
    assert shown["object_path"] == str(ws.root / stored)
    assert shown["object_present"] is True
    assert shown["artifact"]["job_id"] == artifact.job_id
    assert shown["artifact"]["source"] == "generated"
    assert shown["protect"] is False
    assert shown["inputs"]["prompt"] == "a dog in the snow"


@pytest.mark.parametrize(
    "args",
    [("state", "show", "catt"), ("state", "rm", "owl", "catt"), ("state", "mv", "catt", "lion")],
)
def test_an_unknown_name_is_bad_input_with_a_suggestion(ws: CliWorkspace, args) -> None:
    """A name the state does not track exits 3, names the nearest one, and changes nothing."""
    before = ws.snapshot()

    run = ws.run(*args)

    assert run.returncode == ExitCode.INVALID_INPUT
    assert run.stderr.splitlines() == [
        'Error: the state does not track an image "catt" (did you mean "cat"?)',
        "hint: `ltx-reconcile state list` shows every image the state tracks",
    ]
    after = ws.snapshot()
    assert (after.serial, sorted(after.images)) == (before.serial, ["cat", "dog", "owl"])


def test_reading_commands_leave_the_state_file_untouched(ws: CliWorkspace) -> None:
    """list, show and pull only read: the file's bytes and serial stay, no -wal appears."""
    before = file_digest(ws.state_path)

    for args in (("state", "list"), ("state", "show", "cat"), ("state", "pull"), ("show",)):
        ws.ok(*args)

    assert file_digest(ws.state_path) == before
    assert sorted(p.name for p in ws.state_path.parent.glob("state.db*")) == ["state.db"]


def test_state_rm_forgets_an_image_but_keeps_its_object_and_file(
    ws: CliWorkspace, emulator: RunningEmulator
) -> None:
    """rm keeps object and output; the next plan reuses the object, and apply pays nothing."""
    record = ws.images()["cat"]
    assert record.digest is not None
    serial = ws.snapshot().serial

    lines = ws.ok("state", "rm", "cat").splitlines()

    assert lines == [
        f"Removed cat from the state; its stored object {record.digest[:12]} and its output "
        "file out/cat.png are kept.",
        f"Forgot 1 image (state serial {serial} -> {serial + 1}). While a spec names one, the "
        "next plan reuses its stored object at no cost.",
    ]
    assert sorted(ws.images()) == ["dog", "owl"]
    assert ws.store.verify(record.digest)
    assert file_digest(ws.root / "out" / "cat.png") == record.digest

    plan = ws.ok("plan").splitlines()
    assert "    = reuse    cat  flux" in plan
    assert (
        "Plan: 0 to create, 0 to replace, 1 to reuse, 0 to delete. Estimated cost: 0 credits."
        in plan
    )

    ws.ok(*ws.apply_args())
    assert emulator.charges() == []
    assert ws.images()["cat"].digest == record.digest
    assert ws.output_problems() == []


def test_state_rm_of_several_names_is_one_transaction(ws: CliWorkspace) -> None:
    """All names go in one commit (the serial moves once); one unknown name removes none."""
    serial = ws.snapshot().serial

    assert ws.run("state", "rm", "cat", "nope").returncode == ExitCode.INVALID_INPUT
    assert sorted(ws.images()) == ["cat", "dog", "owl"]

    ws.ok("state", "rm", "cat", "dog", "cat")
    after = ws.snapshot()
    assert (sorted(after.images), after.serial) == (["owl"], serial + 1)


def test_state_mv_after_renaming_the_spec_leaves_nothing_to_do(ws: CliWorkspace) -> None:
    """Renamed in the spec and in the state, the image keeps its record; its file moves to
    the new name's output at the next apply, free."""
    old = ws.images()["dog"]
    ws.specs(THREE_IMAGES.replace("dog:", "puppy:"))
    assert "   ~> move     puppy  flux" in ws.ok("plan").splitlines()  # without mv
    serial = ws.snapshot().serial

    lines = ws.ok("state", "mv", "dog", "puppy").splitlines()

    assert lines == [
        f"Renamed dog to puppy in the state (serial {serial} -> {serial + 1}).",
        "Its output file out/dog.png was not moved: the state records it as puppy's output "
        "until the next apply.",
        "Next plan: for puppy, if a spec names it with the same inputs, no change, or a free "
        "move of out/dog.png to the output the spec names; a delete of puppy (and of "
        "out/dog.png) if none does; dog, if a spec still names it, reuses the stored object "
        "at no cost.",
    ]
    new = ws.images()["puppy"]
    assert (new.key, new.digest, new.output) == (old.key, old.digest, "out/dog.png")
    assert "dog" not in ws.images()
    # The spec wants out/puppy.png: the one thing left is moving the file there, free.
    plan = ws.ok("plan")
    assert '~ output: "out/dog.png" -> "out/puppy.png"' in plan, plan
    assert "Estimated cost: 0 credits." in plan
    applied = ws.apply()
    assert applied.returncode == ExitCode.OK, applied.stderr
    assert "1 moved" in applied.stdout
    assert ws.ok("plan").splitlines() == ["No changes. 3 images are up to date."]
    assert (ws.root / "out" / "puppy.png").is_file()
    assert not (ws.root / "out" / "dog.png").exists()


def test_state_mv_refuses_a_name_the_state_already_tracks(ws: CliWorkspace) -> None:
    """Renaming onto a tracked image would lose one of the two: exit 3, nothing changes."""
    before = ws.snapshot()

    run = ws.run("state", "mv", "dog", "cat")

    assert run.returncode == ExitCode.INVALID_INPUT
    assert run.stderr.splitlines() == [
        "Error: cannot rename dog to cat: the state already tracks an image cat",
        "hint: forget it first with `ltx-reconcile state rm cat`, or pick another name",
    ]
    assert ws.snapshot().serial == before.serial


def test_state_writes_wait_for_the_lease(ws: CliWorkspace) -> None:
    """rm, mv and push write under the lease: held elsewhere, they exit 4, changing nothing."""
    (ws.root / "state.json").write_text(ws.ok("state", "pull"))
    with StateStore.open(ws.state_path) as store:
        lease = acquire(store, "apply", timeout_s=0, identity=ELSEWHERE)
    try:
        writes = (
            ("state", "rm", "cat"),
            ("state", "mv", "cat", "kitten"),
            ("state", "push", "state.json"),
        )
        for args in writes:
            run = ws.run(*args)
            assert run.returncode == ExitCode.STATE
            assert "is locked by ci@build-runner-7 (pid 4242, apply" in run.stderr
        assert sorted(ws.images()) == ["cat", "dog", "owl"]
        assert ws.snapshot().serial == json.loads((ws.root / "state.json").read_text())["serial"]
    finally:
        with StateStore.open(ws.state_path) as store:
            release(store, lease)
    ws.ok("state", "rm", "cat")


def test_without_a_state_nothing_is_tracked_and_no_state_is_created(
    workspace: CliWorkspace,
) -> None:
    """An empty workspace lists nothing, and rm/mv of any name is bad input, writing nothing."""
    assert workspace.ok("state", "list").splitlines() == ["No images in the state."]
    for args in (("state", "rm", "cat"), ("state", "mv", "cat", "dog"), ("state", "show", "cat")):
        assert workspace.run(*args).returncode == ExitCode.INVALID_INPUT
    assert not (workspace.root / "state").exists()
