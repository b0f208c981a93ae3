"""`ltx-reconcile verify [--repair]`: drift in the store, the output files and the state.

Every command is a real child process against the module's emulator; the damage is done
to real files between commands, as a disk, a user or a fresh CI checkout would do it.
Every test runs on the state file and on a PostgreSQL state.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from ltx_reconcile.state.records import OutputStat
from testing.workspace import STATE_BACKENDS, CliWorkspace
from tests.apply.specs import THREE_IMAGES

pytestmark = pytest.mark.parametrize("state_backend", STATE_BACKENDS, indirect=True)


REPAIR_HINT = "Run `ltx-reconcile verify --repair` to do the free repairs."


def applied(workspace: CliWorkspace, specs: str = THREE_IMAGES) -> dict[str, str]:
    """Apply `specs`, which must succeed; image name -> its digest."""
    workspace.specs(specs)
    run = workspace.apply()
    assert run.returncode == ExitCode.OK, run.stderr
    return {name: str(r.digest) for name, r in workspace.images().items()}


def replace_file(path: Path, data: bytes) -> None:
    """Give `path` new bytes through a new file and a rename, as most editors save."""
    staged = path.with_name(path.name + ".new")
    staged.write_bytes(data)
    staged.replace(path)


def test_verify_reports_drift_and_repair_fixes_only_the_free_problems(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A corrupt object, a deleted output and a user's edit: one line each, exit 2; then
    --repair quarantines and rebuilds the object, restores the output and keeps the edit."""
    digests = applied(workspace)
    charges = emulator.charges()
    corrupt = workspace.store.path_for(digests["cat"])
    corrupt.unlink()  # a new inode: out/cat.png keeps the good bytes
    corrupt.write_bytes(b"not the image we paid for")
    (workspace.root / "out" / "dog.png").unlink()
    owl = workspace.root / "out" / "owl.png"
    replace_file(owl, b"my retouched owl")
    serial = workspace.snapshot().serial
    owl_line = "  modified   output out/owl.png (owl): changed by someone else; left alone"

    check = workspace.run("verify")

    assert check.returncode == ExitCode.CHANGES, check.stderr
    assert check.stdout.splitlines() == [
        "Checked 3 stored objects, 3 output files and 3 images.",
        f"  corrupt    object {digests['cat']} (used by cat): "
        "restorable at no cost from out/cat.png",
        "  missing    output out/dog.png (dog): restorable at no cost from the store",
        owl_line,
        "Drift: 3 problems: 2 restorable at no cost, 1 changed by someone else and left alone. "
        + REPAIR_HINT,
    ]

    run = workspace.run("verify", "--repair")

    assert run.returncode == ExitCode.CHANGES, run.stderr
    lines = run.stdout.splitlines()
    quarantined = re.fullmatch(
        rf"  restored object {digests['cat']} from out/cat.png "
        rf"\(the corrupt copy is now (state/objects/quarantine/{digests['cat']}\.[0-9a-f]+)\)",
        lines[2],
    )
    assert quarantined, lines
    assert lines[:2] + lines[3:] == [
        "Checked 3 stored objects, 3 output files and 3 images.",
        "Repaired at no cost:",
        "  restored output out/dog.png from the store",
        "Drift left:",
        owl_line,
        "Drift: 1 problem: 1 changed by someone else and left alone.",
    ]
    assert (workspace.root / quarantined[1]).read_bytes() == b"not the image we paid for"
    assert workspace.store.verify(digests["cat"])
    dog = workspace.root / "out" / "dog.png"
    assert dog.read_bytes() == workspace.store.path_for(digests["dog"]).read_bytes()
    assert owl.read_bytes() == b"my retouched owl"
    assert workspace.images()["dog"].output_stat == OutputStat.of(dog.lstat())
    assert workspace.snapshot().serial == serial + 1
    assert emulator.charges() == charges
    again = workspace.run("verify")
    assert again.returncode == ExitCode.CHANGES
    assert again.stdout.splitlines()[1:] == [
        owl_line,
        "Drift: 1 problem: 1 changed by someone else and left alone.",
    ]


def test_an_object_rotted_in_place_is_priced_and_moved_aside(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Bytes changed under an object and its hard-linked output cost a new generation."""
    digests = applied(workspace, THREE_IMAGES.split("      dog:")[0])
    obj = workspace.store.path_for(digests["cat"])
    before = obj.stat()
    obj.chmod(0o644)
    with obj.open("r+b") as file:  # in place: out/cat.png is the same inode
        file.seek(before.st_size // 2)
        file.write(b"\x00rot\x00")
    obj.chmod(0o444)
    os.utime(obj, ns=(before.st_atime_ns, before.st_mtime_ns))  # silent, as bit rot is

    run = workspace.run("verify")

    assert run.returncode == ExitCode.CHANGES
    assert run.stdout.splitlines()[1:] == [
        f"  corrupt    object {digests['cat']} (used by cat): "
        "needs a new generation: 28 credits (`ltx-reconcile apply`)",
        "  corrupt    output out/cat.png (cat): comes back once its object is generated again",
        "Drift: 2 problems: 2 need a new generation (28 credits).",
    ]

    repaired = workspace.run("verify", "--repair")

    assert repaired.returncode == ExitCode.CHANGES
    lines = repaired.stdout.splitlines()
    assert re.fullmatch(
        rf"  moved corrupt object {digests['cat']} aside to "
        rf"state/objects/quarantine/{digests['cat']}\.[0-9a-f]+",
        lines[2],
    ), lines
    assert lines[3:] == [
        "  removed corrupt output out/cat.png (a link to the object moved aside)",
        "Drift left:",
        f"  missing    object {digests['cat']} (used by cat): "
        "needs a new generation: 28 credits (`ltx-reconcile apply`)",
        "  missing    output out/cat.png (cat): comes back once its object is generated again",
        "Drift: 2 problems: 2 need a new generation (28 credits).",
    ]
    plan = workspace.run("plan")
    assert "Plan: 0 to create, 0 to replace, 1 to refetch, 0 to delete." in plan.stdout
    assert "verify --repair" not in plan.stdout
    assert len(emulator.charges()) == 1


def test_a_fresh_runner_rebuilds_the_store_from_out_at_no_cost(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """With only the state and out/ (a clone), plan points at repair, which restores all free."""
    digests = applied(workspace)
    charges = emulator.charges()
    shutil.rmtree(workspace.root / "state" / "objects")
    for path in (workspace.root / "out").iterdir():  # as git checks files out: new inodes
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data)

    plan = workspace.run("plan")
    assert plan.returncode == ExitCode.OK, plan.stderr
    assert (
        "3 stored objects are missing but can be restored at no cost from their output files: "
        "run `ltx-reconcile verify --repair` before applying."
    ) in plan.stdout.splitlines()

    check = workspace.run("verify", "--json")
    assert check.returncode == ExitCode.CHANGES
    document = json.loads(check.stdout)
    assert document["clean"] is False
    assert [(f["kind"], f["problem"], f["free"], f["source"]) for f in document["findings"]] == [
        ("object", "missing", True, f"out/{name}.png")
        for name in sorted(digests, key=lambda n: digests[n])
    ]

    repair = workspace.run("verify", "--repair")
    assert repair.returncode == ExitCode.OK, repair.stdout
    assert repair.stdout.splitlines()[-1] == "No drift left."

    replan = workspace.run("plan")
    assert replan.stdout.splitlines() == ["No changes. 3 images are up to date."]
    assert workspace.run("verify").returncode == ExitCode.OK
    assert workspace.output_problems() == []
    assert emulator.charges() == charges
